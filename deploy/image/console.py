#!/usr/bin/env python3
"""deploy/image/console.py: talk to the appliance VM's serial console (the shelf console),
or its qemu monitor, for deploy/image/test.sh.

  console.py DIR cmd 'list -l'          run one console command, print its output
  console.py DIR wait-prompt SECONDS    wait until the console shows the shelf prompt
  console.py DIR qmp '{"execute": ...}' one QMP command, print the answer
"""
import json
import socket
import sys
import time

PROMPT = b"ethershelf shelf "


def console(dirname):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(f"{dirname}/console.sock")
    s.settimeout(0.5)
    return s


def read_for(s, seconds, until=None):
    out = b""
    end = time.time() + seconds
    while time.time() < end:
        try:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if until is not None and until(out):
                break
        except socket.timeout:
            pass
    return out


def at_prompt(buf):
    tail = buf.rstrip(b" ").split(b"\n")[-1]
    return PROMPT in tail and buf.rstrip().endswith(b">")


def wait_prompt(dirname, seconds):
    end = time.time() + seconds
    while time.time() < end:
        try:
            s = console(dirname)
        except OSError:
            time.sleep(1)
            continue
        s.sendall(b"\r")
        got = read_for(s, 5, at_prompt)
        s.close()
        if at_prompt(got):
            return True
        time.sleep(2)
    return False


def command(dirname, line):
    s = console(dirname)
    s.sendall(b"\x15\r")
    read_for(s, 5, at_prompt)
    s.sendall(line.encode() + b"\r")
    # Done when a prompt follows the Enter's line break (keep lines shorter than the
    # terminal: a wrapping line makes the editor redraw its prompt mid-echo).
    out = read_for(s, 60, lambda b: b"\n" in b and at_prompt(b))
    s.close()
    text = out.decode(errors="replace").replace("\r", "")
    lines = [l for l in text.split("\n") if PROMPT.decode() not in l and not l.startswith("\x1b")]
    # Drop the echo of the command and terminal control sequences.
    clean = []
    for l in lines:
        while "\x1b[" in l:
            i = l.index("\x1b[")
            j = i + 2
            while j < len(l) and not l[j].isalpha():
                j += 1
            l = l[:i] + l[j + 1:]
        if l.strip() and l.strip() != line:
            clean.append(l)
    return "\n".join(clean)


def qmp(dirname, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(f"{dirname}/qmp.sock")
    f = s.makefile("rw")
    f.readline()
    f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
    f.flush()
    f.readline()
    f.write(request + "\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            return "{}"
        doc = json.loads(line)
        if "return" in doc or "error" in doc:
            return line.strip()


def main():
    dirname, what = sys.argv[1], sys.argv[2]
    if what == "cmd":
        print(command(dirname, sys.argv[3]))
    elif what == "wait-prompt":
        sys.exit(0 if wait_prompt(dirname, float(sys.argv[3])) else 1)
    elif what == "qmp":
        print(qmp(dirname, sys.argv[3]))
    else:
        sys.exit(f"console.py: unknown action {what}")


if __name__ == "__main__":
    main()
