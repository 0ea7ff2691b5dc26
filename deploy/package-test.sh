#!/usr/bin/env bash
# Tests the Debian package for real: builds it (deploy/package.sh), runs lintian (no errors
# allowed), then installs it into a throwaway Debian 12 root made by mmdebstrap (minbase, plus
# the package's dependencies, man-db and init-system-helpers; the tarball is cached under
# /var/cache/ethershelf-pkgtest, so reruns need no network) and checks:
#   files in place, the unit enabled, `ethershelf --version`, `aoebench --version`,
#   `ethershelf check` on the default config, every man page renders (`man -l`), the bash
#   completions load; `ethershelf serve` on the default config stays up, logs that it serves
#   nothing and stops on SIGTERM (in a fresh network namespace: no interface is made and no
#   frame can leave); an upgrade keeps a modified conffile and the state; remove keeps both;
#   purge leaves no /etc/ethershelf and no /var/lib/ethershelf, but never deletes a file the
#   shelf did not write (a LUN image there survives a purge).
# Needs root. Installs what it lacks (mmdebstrap, lintian, dpkg-dev) with apt-get, and fails
# naming the packages if it cannot. Every wait is bounded. The root is deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

fail() {
  echo "package-test: FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (chroot, mounts, dpkg in the test root)"
need=()
for pair in mmdebstrap:mmdebstrap lintian:lintian dpkg-shlibdeps:dpkg-dev unshare:util-linux \
  strip:binutils; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  step "installing ${need[*]}"
  { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 \
      apt-get install -y -qq "${need[@]}" >/dev/null; } ||
    fail "missing packages: ${need[*]} (apt-get install ${need[*]} failed)"
fi

step "building the package"
t0=$SECONDS
deb=$(bash deploy/package.sh | tail -n 1)
[ -f "$deb" ] || fail "package.sh made no package"
echo "   $deb ($((SECONDS - t0)) s)"

step "lintian"
lintian_out=$(timeout 300 lintian --allow-root --fail-on error "$deb" 2>&1) ||
  { echo "$lintian_out"; fail "lintian reports errors"; }
echo "${lintian_out:-   (no tags)}"

# The Debian 12 root, cached by its package list.
depends=$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/[[:space:]]//g')
include="$depends,man-db,init-system-helpers"
cache=/var/cache/ethershelf-pkgtest
tarball=$cache/bookworm-minbase-$(echo "$include" | md5sum | cut -c1-12).tar
if [ ! -f "$tarball" ] || [ ! -s "$tarball" ]; then
  step "mmdebstrap bookworm minbase + $include (cached as $tarball)"
  mkdir -p "$cache"
  timeout 900 mmdebstrap --quiet --format=tar --variant=minbase --include="$include" bookworm "$tarball.part" ||
    fail "mmdebstrap failed"
  mv "$tarball.part" "$tarball"
fi

root=$(mktemp -d /var/tmp/ethershelf-pkgtest.XXXXXX)
serve_pid=
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -KILL "$serve_pid" 2>/dev/null || true
  fi
  # Mounts live only in the namespaces of the commands below; check before deleting anyway.
  if findmnt -rn -o TARGET | grep -q "^$root"; then
    echo "package-test: mounts left under $root; not deleting it" >&2
  else
    rm -rf "$root"
  fi
}
trap cleanup EXIT
tar -C "$root" -xf "$tarball"

# Runs a command in the test root, in its own mount and network namespaces (/proc and a
# read-only /sys mounted there; only a loopback interface, down).
inroot() {
  timeout "${INROOT_TIMEOUT:-120}" unshare --mount --net --propagation private \
    sh -c 'r=$1; shift; mount -t proc proc "$r/proc" && mount -t sysfs -o ro sysfs "$r/sys" &&
      exec chroot "$r" "$@"' sh "$root" "$@"
}

cp "$deb" "$root/tmp/ethershelf.deb"
# The same package with a higher revision, to test an upgrade.
up=$(mktemp -d)
dpkg-deb -R "$deb" "$up/pkg"
sed -i 's/^Version: \(.*\)-\([0-9]*\)$/Version: \1-\2+1/' "$up/pkg/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz --build "$up/pkg" "$root/tmp/ethershelf-up.deb" >/dev/null
rm -rf "$up"

step "install"
inroot dpkg -i /tmp/ethershelf.deb || fail "dpkg -i failed"
for f in /usr/sbin/ethershelf /usr/bin/aoebench /lib/systemd/system/ethershelf.service \
  /etc/ethershelf/shelf.yaml /usr/share/ethershelf/grafana/ethershelf.json \
  /usr/share/ethershelf/prometheus/ethershelf-rules.yml \
  /usr/share/doc/ethershelf/copyright /usr/share/doc/ethershelf/changelog.Debian.gz \
  /usr/share/doc/ethershelf/README.md.gz /usr/share/man/man8/ethershelf.8.gz \
  /usr/share/man/man8/ethershelf-serve.8.gz /usr/share/man/man1/aoebench.1.gz \
  /usr/share/bash-completion/completions/ethershelf /usr/share/bash-completion/completions/aoebench \
  /usr/share/zsh/vendor-completions/_ethershelf /usr/share/fish/vendor_completions.d/ethershelf.fish; do
  [ -f "$root$f" ] || fail "$f is not installed"
done
[ -d "$root/var/lib/ethershelf" ] || fail "/var/lib/ethershelf is missing"
[ "$(stat -c %a "$root/var/lib/ethershelf")" = 700 ] || fail "/var/lib/ethershelf is not 0700"
[ ! -e "$root/usr/bin/es-faultfs" ] || fail "es-faultfs (a test tool) is packaged"
grep -qx /etc/ethershelf/shelf.yaml "$root/var/lib/dpkg/info/ethershelf.conffiles" ||
  fail "shelf.yaml is not a conffile"
[ -L "$root/etc/systemd/system/multi-user.target.wants/ethershelf.service" ] ||
  fail "postinst did not enable ethershelf.service"
echo "   files in place; ethershelf.service enabled"

step "run"
inroot ethershelf --version
inroot aoebench --version
check=$(inroot ethershelf check -c /etc/ethershelf/shelf.yaml) || fail "check fails on the default config: $check"
echo "$check"
grep -q "0 port(s), 0 LUN(s)" <<<"$check" || fail "the default config is not empty"
pages=$(cd "$root" && ls usr/share/man/man8/ethershelf*.gz usr/share/man/man1/aoebench*.gz)
for page in $pages; do
  rendered=$(inroot env MANWIDTH=80 man -l "/$page" 2>"$root/tmp/man.err") ||
    fail "man -l /$page failed: $(cat "$root/tmp/man.err")"
  name=$(basename "$page" | sed 's/\.[18]\.gz$//')
  grep -q "^NAME" <<<"$rendered" && grep -q "$name" <<<"$rendered" ||
    fail "man -l /$page does not show its NAME"
  [ ! -s "$root/tmp/man.err" ] || fail "man -l /$page: $(cat "$root/tmp/man.err")"
done
echo "   $(wc -w <<<"$pages") man pages render"
inroot bash -c '. /usr/share/bash-completion/completions/ethershelf &&
  . /usr/share/bash-completion/completions/aoebench && complete -p ethershelf aoebench' ||
  fail "the bash completions do not load"

step "serve the default config (no ports, no LUNs)"
log=$root/tmp/serve.log
# As inroot, but exec all the way down, so that $! is the shelf's own PID (its waits are
# bounded below; cleanup kills it if the script stops early).
unshare --mount --net --propagation private \
  sh -c 'mount -t proc proc "$1/proc" && mount -t sysfs -o ro sysfs "$1/sys" &&
    exec chroot "$1" /usr/sbin/ethershelf serve -c /etc/ethershelf/shelf.yaml' sh "$root" \
  >"$log" 2>&1 &
serve_pid=$!
for _ in $(seq 50); do
  [ "$(cat "/proc/$serve_pid/comm" 2>/dev/null)" = ethershelf ] && grep -q serving "$log" && break
  sleep 0.1
done
sleep 3
kill -0 "$serve_pid" 2>/dev/null && [ "$(cat "/proc/$serve_pid/comm")" = ethershelf ] ||
  { cat "$log"; fail "ethershelf serve did not stay up"; }
grep -q "no LUNs configured: serving nothing; edit /etc/ethershelf/shelf.yaml" "$log" ||
  { cat "$log"; fail "serve does not say that it serves nothing"; }
kill -TERM "$serve_pid"
status=0
timeout 20 tail --pid="$serve_pid" -f /dev/null || fail "serve did not stop within 20 s of SIGTERM"
wait "$serve_pid" || status=$?
serve_pid=
[ "$status" = 0 ] || { cat "$log"; fail "serve exited with $status"; }
grep -q "stopped" "$log" || { cat "$log"; fail "serve did not log its stop"; }
sed 's/^/   /' "$log"

step "upgrade keeps a modified conffile and the state"
echo "# changed by the admin" >>"$root/etc/ethershelf/shelf.yaml"
echo '{}' >"$root/var/lib/ethershelf/lun-1.0.json"
inroot dpkg -i /tmp/ethershelf-up.deb || fail "the upgrade failed"
inroot dpkg-query -W -f='${Version}\n' ethershelf | grep -q '+1$' || fail "the upgrade did not happen"
grep -q "changed by the admin" "$root/etc/ethershelf/shelf.yaml" || fail "the upgrade replaced the modified conffile"
ls "$root"/etc/ethershelf/*.dpkg-* >/dev/null 2>&1 && fail "the upgrade left $(ls "$root"/etc/ethershelf/*.dpkg-*)"
[ -f "$root/var/lib/ethershelf/lun-1.0.json" ] || fail "the upgrade lost the state"

step "remove keeps configuration and state"
inroot dpkg --remove ethershelf || fail "dpkg --remove failed"
[ ! -e "$root/usr/sbin/ethershelf" ] || fail "remove left the binary"
grep -q "changed by the admin" "$root/etc/ethershelf/shelf.yaml" || fail "remove deleted the configuration"
[ -f "$root/var/lib/ethershelf/lun-1.0.json" ] || fail "remove deleted the state"

step "purge deletes configuration and state"
inroot dpkg --purge ethershelf || fail "dpkg --purge failed"
[ ! -e "$root/etc/ethershelf" ] || fail "purge left /etc/ethershelf: $(ls -A "$root/etc/ethershelf")"
[ ! -e "$root/var/lib/ethershelf" ] || fail "purge left /var/lib/ethershelf: $(ls -A "$root/var/lib/ethershelf")"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/ethershelf.service" ] ||
  fail "purge left the unit enabled"

step "purge never deletes a file the shelf did not write"
inroot dpkg -i /tmp/ethershelf.deb >/dev/null || fail "reinstall failed"
echo data >"$root/var/lib/ethershelf/lun0.img"
echo '{}' >"$root/var/lib/ethershelf/lun-1.0.json"
inroot dpkg --purge ethershelf || fail "dpkg --purge failed"
[ -f "$root/var/lib/ethershelf/lun0.img" ] || fail "purge deleted an admin's file"
[ ! -e "$root/var/lib/ethershelf/lun-1.0.json" ] || fail "purge left the shelf's state"

echo "== done in $((SECONDS - started)) s"
echo "package-test: 1 passed, 0 failed"
