#!/usr/bin/env python3
"""Turn one deploy/vm/initiator.sh results directory into summary.txt and summary.json.

usage: summarize.py OUTDIR

Reads run.info (written by the host script), events.tsv (when the host saw each guest step)
and serial1.log (the guest's results channel). Splits the attachments into fio.json,
fio-stderr.txt, aoe.txt and dmesg.txt, writes the summaries, prints summary.txt and exits 0
when the run passed, 1 when it failed. Python 3 standard library only.
"""
import json
import re
import os
import sys


def read_run_info(path):
    info = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("\t")
                info[key] = value
    except OSError:
        pass
    return info


def read_channel(path):
    """Guest records: events [(name, uptime, detail)] and attachments {name: [lines]}."""
    events, attachments, current = [], {}, None
    try:
        f = open(path, "rb")
    except OSError:
        return events, attachments
    with f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\r\n").rstrip("\r")
            if line.startswith("ESVM ev "):
                parts = line.split(" ", 4)
                name = parts[2] if len(parts) > 2 else "?"
                try:
                    uptime = float(parts[3])
                except (IndexError, ValueError):
                    uptime = None
                events.append((name, uptime, parts[4] if len(parts) > 4 else ""))
            elif line.startswith("ESVM begin "):
                current = line[len("ESVM begin "):]
                attachments[current] = []
            elif line.startswith("ESVM end "):
                current = None
            elif current is not None:
                attachments[current].append(line)
    return events, attachments


def read_host_times(path):
    seen = {}
    try:
        with open(path) as f:
            for line in f:
                ms, _, name = line.strip().partition("\t")
                if name and ms.isdigit():
                    seen.setdefault(name, int(ms) / 1000.0)
    except OSError:
        pass
    return seen


def key_values(lines):
    kv = {}
    for line in lines:
        k, sep, v = line.partition("=")
        if sep:
            kv[k.strip()] = v.strip()
    return kv


def as_int(s):
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def fio_rows(fio):
    rows = []
    for job in fio.get("jobs", []):
        for rw in ("read", "write", "trim"):
            st = job.get(rw) or {}
            if not st.get("total_ios"):
                continue
            clat = st.get("clat_ns") or {}
            pct = clat.get("percentile") or {}

            def us(ns):
                return round(ns / 1000.0, 1) if ns is not None else None

            rows.append({
                "job": job.get("jobname", "?"),
                "rw": rw,
                "iops": round(st.get("iops", 0.0), 1),
                "mib_s": round(st.get("bw_bytes", 0) / 1048576.0, 2),
                "io_mib": round(st.get("io_bytes", 0) / 1048576.0, 1),
                "ios": st.get("total_ios"),
                "runtime_s": round(st.get("runtime", 0) / 1000.0, 2),
                "lat_us": {
                    "mean": us(clat.get("mean")),
                    "p50": us(pct.get("50.000000")),
                    "p90": us(pct.get("90.000000")),
                    "p99": us(pct.get("99.000000")),
                    "p99.9": us(pct.get("99.900000")),
                    "max": us(clat.get("max")),
                },
                "error": job.get("error", 0),
                "total_err": job.get("total_err", 0),
            })
    return rows


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = sys.argv[1]
    p = lambda name: os.path.join(out, name)  # noqa: E731

    info = read_run_info(p("run.info"))
    events, att = read_channel(p("serial1.log"))
    host_t = read_host_times(p("events.tsv"))

    # Attachments as files of their own.
    for name, fname in (("fio_json", "fio.json"), ("fio_stderr", "fio-stderr.txt"), ("dmesg", "dmesg.txt")):
        if name in att:
            with open(p(fname), "w") as f:
                f.write("\n".join(att[name]) + "\n")
    # Attachments a --guest-script sent with `attach NAME ...`.
    known = {"fio_json", "fio_stderr", "dmesg", "aoe_sysfs", "aoe_sysfs_after", "aoe_debugfs"}
    for name, lines in att.items():
        if name not in known and re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            with open(p("attach-%s.txt" % name), "w") as f:
                f.write("\n".join(lines) + "\n")
    aoe_parts = [(n, att[n]) for n in ("aoe_sysfs", "aoe_sysfs_after", "aoe_debugfs") if n in att]
    if aoe_parts:
        with open(p("aoe.txt"), "w") as f:
            for n, lines in aoe_parts:
                f.write("## %s\n%s\n" % (n, "\n".join(lines)))

    failures = []
    if info.get("host_failure"):
        failures.append(info["host_failure"])
    for name, _, detail in events:
        if name == "fail":
            failures.append("guest: " + detail)
    result = [d for n, _, d in events if n == "result"]
    fio_rc = None
    if result:
        fio_rc = as_int(key_values(result[-1].split()).get("fio_rc"))
    elif not failures:
        failures.append("the guest reported no result (see console.log)")

    fio, fio_version, rows = None, None, []
    if "fio_json" in att:
        text = "\n".join(att["fio_json"])
        start = text.find("{")  # fio may print notes before the JSON document
        try:
            fio = json.loads(text[start:]) if start >= 0 else None
        except ValueError as e:
            failures.append("fio's JSON output does not parse: %s" % e)
    if fio is not None:
        fio_version = fio.get("fio version")
        rows = fio_rows(fio)
        if not rows:
            failures.append("fio reported no I/O")
    elif result and fio_rc == 0:
        failures.append("fio exited 0 but sent no JSON")
    if fio_rc not in (None, 0):
        why = "fio exited with status %d" % fio_rc
        up = {n: u for n, u, _ in events}
        limit = as_int(info.get("fio_timeout"))
        if limit and up.get("fio_start") is not None and up.get("fio_end") is not None \
                and up["fio_end"] - up["fio_start"] >= limit - 0.5:
            why += " (stopped by --fio-timeout %d s)" % limit
        failures.append(why)
    for job in (fio or {}).get("jobs", []):
        if job.get("error") or job.get("total_err"):
            why = "fio job %s: error %s" % (job.get("jobname", "?"), job.get("error"))
            if job.get("total_err"):
                why += ", %s I/O errors" % job["total_err"]
            failures.append(why)
    failures = list(dict.fromkeys(failures))

    dev = key_values(att.get("aoe_sysfs", []))
    payload = as_int(dev.get("payload"))
    sectors = as_int(dev.get("size"))
    device = {
        "name": info.get("device"),
        "payload_bytes": payload,
        "sectors_per_frame": payload // 512 if payload else None,
        "size_sectors": sectors,
        "state": dev.get("state"),
        "mac": dev.get("mac"),
        "netif": dev.get("netif"),
        "firmware_version": dev.get("firmware-version"),
        "max_hw_sectors_kb": as_int(dev.get("queue/max_hw_sectors_kb")),
        "state_after_fio": key_values(att.get("aoe_sysfs_after", [])).get("state"),
    }
    timeline = [{"event": n, "host_s": host_t.get(n), "guest_s": u, "detail": d} for n, u, d in events]
    summary = {
        "verdict": "fail" if failures else "pass",
        "failures": failures,
        "run": {k: (int(v) if v.isdigit() else {"yes": True, "no": False}.get(v, v)) if k != "device" else v
                for k, v in info.items()},
        "boot_s": host_t.get("init"),
        "device_up_s": host_t.get("device_up"),
        "device": device,
        "timeline": timeline,
        "fio": {"version": fio_version, "exit_status": fio_rc, "jobs": rows},
    }
    with open(p("summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")

    t = []
    t.append("verdict: %s" % ("FAILED" if failures else "PASSED"))
    for why in failures:
        t.append("  - " + why)
    t.append("run:     kernel %s (%s), accel %s, MTU %s, %s NIC(s), %s vCPUs, %s MiB" % (
        info.get("kernel", "?"), info.get("kernel_file", "?"), info.get("accel", "?"),
        info.get("mtu", "?"), info.get("nics", "?"), info.get("smp", "?"), info.get("mem_mib", "?")))
    t.append("target:  %s (in %s; alive at the end: %s)" % (
        info.get("target", "?"), info.get("netns", "?"), info.get("target_alive_at_end", "?")))
    t.append("job:     %s" % info.get("fio_job", "?"))
    if payload is not None:
        size = "%.2f GiB" % (sectors * 512 / 2**30) if sectors else "?"
        t.append("device:  %s payload=%d (%d sectors per frame), size %s, state %s, netif %s, mac %s, fw %s" % (
            info.get("device", "?"), payload, payload // 512, size, device["state"], device["netif"],
            device["mac"], device["firmware_version"]))
    else:
        t.append("device:  %s never came up" % info.get("device", "?"))
    t.append("")
    t.append("timeline (host seconds after qemu start, guest uptime in brackets)")
    for e in timeline:
        t.append("  %6s [%6s]  %-11s %s" % (fmt(e["host_s"], ".1f"), fmt(e["guest_s"], ".2f"), e["event"], e["detail"]))
    t.append("  qemu status %s; whole run %s s" % (info.get("qemu_status", "?"), info.get("script_seconds", "?")))
    t.append("")
    if rows:
        t.append("fio %s (exit status %s)" % (fio_version or "", fmt(fio_rc, "d")))
        t.append("  %-22s %-5s %9s %9s %8s %9s %9s %9s %9s %9s %6s" % (
            "job", "rw", "IOPS", "MiB/s", "MiB", "lat mean", "p50", "p99", "p99.9", "max us", "errors"))
        for r in rows:
            lat = r["lat_us"]
            t.append("  %-22s %-5s %9.0f %9.2f %8.1f %9s %9s %9s %9s %9s %6s" % (
                r["job"][:22], r["rw"], r["iops"], r["mib_s"], r["io_mib"], fmt(lat["mean"], ".0f"),
                fmt(lat["p50"], ".0f"), fmt(lat["p99"], ".0f"), fmt(lat["p99.9"], ".0f"),
                fmt(lat["max"], ".0f"), r["total_err"] or r["error"]))
        t.append("")
    aoe_msgs = [line for line in att.get("dmesg", []) if "aoe" in line.lower()]
    if aoe_msgs:
        t.append("aoe.ko messages (dmesg, last 10)")
        t.extend("  " + line for line in aoe_msgs[-10:])
        t.append("")
    if att.get("fio_stderr") and (failures or any(att["fio_stderr"])):
        tail = [line for line in att["fio_stderr"] if line.strip()][-8:]
        if tail:
            t.append("fio messages (last 8)")
            t.extend("  " + line for line in tail)
            t.append("")
    text = "\n".join(line.rstrip() for line in t).rstrip("\n") + "\n"
    with open(p("summary.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
