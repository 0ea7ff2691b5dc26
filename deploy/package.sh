#!/usr/bin/env bash
# Builds the Debian package target/debian/ethershelf_<version>-<revision>_amd64.deb with
# dpkg-deb (no debhelper, no cargo-deb), for Debian 12 (bookworm), amd64:
#   /usr/sbin/ethershelf, /usr/bin/aoebench        release builds, stripped (es-faultfs, a test
#                                                   tool, is left out)
#   /lib/systemd/system/ethershelf.service         deploy/systemd/ethershelf.service as is (it
#                                                   already runs /usr/sbin/ethershelf)
#   /etc/ethershelf/shelf.yaml                     conffile, deploy/debian/shelf.yaml: no ports,
#                                                   no LUNs, so the shelf serves nothing
#   /var/lib/ethershelf                            the state directory (mode 0700)
#   /usr/share/man/man8/ethershelf*.8.gz, man1/aoebench*.1.gz   from the clap definitions
#                                                   (hidden `write-docs DIR` of each binary)
#   bash, zsh and fish completions                 the same way
#   /usr/share/ethershelf/grafana/ethershelf.json  the Grafana dashboard
#   /usr/share/ethershelf/prometheus/              alerting/recording rules, their promtool
#                                                   tests and an example scrape config
#   /usr/share/doc/ethershelf/                     copyright (DEP-5, with the licences of the
#                                                   Rust crates compiled in), changelog.Debian.gz,
#                                                   README.md.gz, examples/
# Depends is computed by dpkg-shlibdeps from the binaries (libc6, libgcc-s1, libhwloc15, ...).
# Maintainer scripts: deploy/debian/{postinst,prerm,postrm}.
#
# Environment: DEB_REVISION (default 1), DEB_MAINTAINER (default below), SOURCE_DATE_EPOCH
# (default: the last commit's time, so the changelog date is reproducible).
#
# lintian (bookworm's 2.116) reports no errors. Kept:
#   W initial-upload-closes-no-bugs  the first changelog entry closes no Debian ITP bug: this
#     package is built from the project's tree, not uploaded to the Debian archive.
#   I hardening-no-fortify-functions  Rust code calls no fortifiable libc functions.
#   I spelling-error-in-binary  false positives in compressed/binary data.
#   I package-supports-alternative-init-but-no-init.d-script  systemd only (Type=notify,
#     watchdog); there is no sysvinit script.
# Overridden (usr/share/lintian/overrides/ethershelf):
#   non-standard-dir-perm var/lib/ethershelf/ 0700 != 0755  LUN state (reservations,
#     mask lists, the console's LUN book) is for root only; the unit's StateDirectoryMode=0700
#     would set the same mode at the first start anyway.
# Needs: cargo, dpkg-dev (dpkg-shlibdeps), binutils (strip), gzip; on a build host where the
# binaries link, their -dev libraries' runtime packages are installed (dpkg-shlibdeps reads
# them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

missing=()
for tool in cargo dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "package.sh: missing: ${missing[*]} (apt-get install dpkg-dev binutils gzip; cargo from rustup)" >&2
  exit 1
fi

cargo build --release --locked -p ethershelf -p ethershelf-bench
bin=$root/target/release
version=$("$bin/ethershelf" --version | awk '{print $2}')
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || { echo "package.sh: odd version '$version'" >&2; exit 1; }
revision=${DEB_REVISION:-1}
maintainer=${DEB_MAINTAINER:-ethershelf developers <ethershelf@lists.example.org>}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$epoch
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

out=$root/target/debian
stage=$out/ethershelf_${version}-${revision}_amd64
deb=$out/ethershelf_${version}-${revision}_amd64.deb
rm -rf "$stage" "$deb"
mkdir -p "$stage/DEBIAN"
umask 022

# Binaries, stripped as dh_strip does (the release profile keeps line tables for perf).
install -D -m 0755 "$bin/ethershelf" "$stage/usr/sbin/ethershelf"
install -D -m 0755 "$bin/aoebench" "$stage/usr/bin/aoebench"
strip --remove-section=.comment --remove-section=.note --strip-unneeded \
  "$stage/usr/sbin/ethershelf" "$stage/usr/bin/aoebench"

# The unit, the default configuration (conffile) and the state directory.
install -D -m 0644 deploy/systemd/ethershelf.service "$stage/lib/systemd/system/ethershelf.service"
install -D -m 0644 deploy/debian/shelf.yaml "$stage/etc/ethershelf/shelf.yaml"
echo /etc/ethershelf/shelf.yaml >"$stage/DEBIAN/conffiles"
install -d -m 0700 "$stage/var/lib/ethershelf"

# Man pages and completions, made by the binaries from their own command-line definitions.
docs=$(mktemp -d)
trap 'rm -rf "$docs"' EXIT
"$bin/ethershelf" write-docs "$docs/ethershelf" >/dev/null
"$bin/aoebench" write-docs "$docs/aoebench" >/dev/null
install -d -m 0755 "$stage/usr/share/man/man8" "$stage/usr/share/man/man1" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d"
for page in "$docs"/ethershelf/*.8 "$docs"/aoebench/*.1; do
  section=${page##*.}
  gzip -9n <"$page" >"$stage/usr/share/man/man$section/$(basename "$page").gz"
done
for name in ethershelf aoebench; do
  install -m 0644 "$docs/$name/$name" "$stage/usr/share/bash-completion/completions/$name"
  install -m 0644 "$docs/$name/_$name" "$stage/usr/share/zsh/vendor-completions/_$name"
  install -m 0644 "$docs/$name/$name.fish" "$stage/usr/share/fish/vendor_completions.d/$name.fish"
done

# Grafana dashboard, documentation, examples.
install -D -m 0644 deploy/grafana/ethershelf.json "$stage/usr/share/ethershelf/grafana/ethershelf.json"
for f in ethershelf-rules.yml ethershelf-rules.test.yml prometheus.yml README.md; do
  install -D -m 0644 "deploy/prometheus/$f" "$stage/usr/share/ethershelf/prometheus/$f"
done
doc=$stage/usr/share/doc/ethershelf
install -d -m 0755 "$doc/examples"
gzip -9n <README.md >"$doc/README.md.gz"
for f in config/examples/*.yaml; do
  install -m 0644 "$f" "$doc/examples/$(basename "$f")"
done
install -D -m 0644 /dev/stdin "$stage/usr/share/lintian/overrides/ethershelf" <<'EOF'
# LUN state (reservations, mask lists, the LUN book) is for root only, as the unit's
# StateDirectoryMode=0700 would make it anyway.
ethershelf: non-standard-dir-perm 0700 != 0755 [var/lib/ethershelf/]
EOF

# changelog.Debian.gz
date_r=$(LC_ALL=C date -u -R -d "@$epoch")
gzip -9n >"$doc/changelog.Debian.gz" <<EOF
ethershelf ($version-$revision) unstable; urgency=medium

  * Built from git commit $commit by deploy/package.sh.

 -- $maintainer  $date_r
EOF

# copyright (machine-readable), with the licences of every Rust crate compiled in.
crates=$(cargo tree --offline --locked -p ethershelf -p ethershelf-bench -e normal,no-proc-macro \
  --prefix none --format '{l}|{p}' |
  grep -v -e '^[^|]*|ethershelf' -e '^$' | sed 's/ (\*)$//; s/ v\([0-9]\)/ \1/' | sort -u)
{
  cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ethershelf
Source: https://example.invalid/ethershelf
Comment: The binaries are statically linked Rust programs. Besides ethershelf's own code
 (Apache-2.0) they contain crates from crates.io, as locked in Cargo.lock: those of the
 dependency graph of the ethershelf and ethershelf-bench packages, listed below under the
 licence expression each crate's Cargo.toml declares (all permissive); their copyright
 notices are in each crate's source. Dynamically linked: libc6, libgcc-s1, libhwloc15 (and
 libudev1 through it), covered by their own packages' copyright files.
EOF
  # One paragraph per licence expression, crates wrapped at 90 columns.
  awk -F'|' '
    function flush() { if (line != "") print "  " line; line = "" }
    $1 != prev { flush(); printf " .\n %s:\n", $1; prev = $1 }
    { item = $2; if (length(line) + length(item) > 84) { print "  " line ","; line = "" }
      line = line == "" ? item : line ", " item }
    END { flush() }' <<<"$crates"
  cat <<'EOF'

Files: *
Copyright: 2025-2026 The ethershelf developers
License: Apache-2.0

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not use this
 software except in compliance with the License. You may obtain a copy of the License at
 http://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software distributed under the
 License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND,
 either express or implied. See the License for the specific language governing permissions
 and limitations under the License.
 .
 On Debian systems, the full text of the Apache License, Version 2.0 can be found in
 "/usr/share/common-licenses/Apache-2.0".
EOF
} >"$doc/copyright"
chmod 0644 "$doc/copyright"

# Maintainer scripts.
for script in postinst prerm postrm; do
  install -m 0755 "deploy/debian/$script" "$stage/DEBIAN/$script"
done

# Depends from the binaries' shared libraries: dpkg-shlibdeps wants a debian/control.
shl=$(mktemp -d)
mkdir "$shl/debian"
printf 'Source: ethershelf\n\nPackage: ethershelf\nArchitecture: amd64\n' >"$shl/debian/control"
depends=$(cd "$shl" && dpkg-shlibdeps -O "$stage/usr/sbin/ethershelf" "$stage/usr/bin/aoebench" |
  sed -n 's/^shlibs:Depends=//p')
rm -rf "$shl"
[ -n "$depends" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: ethershelf
Version: $version-$revision
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Section: admin
Priority: optional
Description: ATA-over-Ethernet (AoE) storage shelf
 ethershelf exports files, block devices and RAID-10 arrays over the shelf's
 disks as AoE LUNs (e<shelf>.<slot>) on one or more Ethernet ports, like a
 Coraid shelf or vblade, for the Linux aoe initiator. It moves frames with
 AF_XDP or AF_PACKET and does disk I/O with io_uring; writes are acknowledged
 only once stable unless a LUN opts into write-back.
 .
 RAID-10 LUNs rebuild onto hot spares, resync and scrub in the background.
 The shelf runs as a systemd service (Type=notify, watchdog, least
 privilege), reloads its YAML on SIGHUP, has a Coraid-style console
 (ethershelf console/ctl) and Prometheus metrics; a Grafana dashboard is
 included. The default /etc/ethershelf/shelf.yaml opens no port and serves
 nothing until ports and LUNs are configured.
 .
 aoebench, a userspace AoE initiator and fio-style load generator, is
 included.
EOF

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -depth -newermt "@$epoch" -exec touch --no-dereference -d "@$epoch" {} +
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
