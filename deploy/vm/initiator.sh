#!/usr/bin/env bash
# deploy/vm/initiator.sh: put an AoE target in front of the real Linux initiator (aoe.ko).
# Run with --help for the whole story. Exit status: 0 pass, 1 test failed, 2 usage/setup error.
set -uo pipefail
export LC_ALL=C

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${ETHERSHELF_VM_CACHE:-/var/cache/ethershelf-vm}
# Bump when the initramfs layout changes, so cached images are rebuilt.
IMAGE_LAYOUT=4

usage() {
	cat <<'EOF'
Usage: deploy/vm/initiator.sh [OPTIONS] -- TARGET [ARGS...]
       deploy/vm/initiator.sh --prepare

Tests an AoE target against the Linux kernel's own initiator. A qemu VM boots Debian 12's
stock kernel (package linux-image-amd64) with a small busybox initramfs that holds aoe.ko,
the virtio-net driver and Debian's fio. The VM's NIC is a tap device inside a network
namespace that this script creates (and deletes); TARGET runs inside that namespace and must
serve AoE on the tap. In the guest, aoe.ko is loaded, the script waits for /dev/etherd/eS.L,
runs the fio job against it, sends the results back on the second serial port, and powers off.
No frame leaves the namespace; no interface of the root namespace is touched.

TARGET is started as `ip netns exec NS setsid TARGET ARGS...` (no shell: use bash -c '...'
for shell syntax). Placeholders in its arguments:
  {IFACE}   the interface to serve on (the tap, vmtap0)
  {IFACES}  all taps, comma-separated (with --nics N)
  {NETNS}   the namespace's name
  {MTU}     the MTU
  {OUT}     the results directory
Example:
  truncate -s 1G /tmp/disk.img
  deploy/vm/initiator.sh --mtu 9000 --fio-job deploy/vm/jobs/verify.fio \
      -- vblade 1 0 {IFACE} /tmp/disk.img

Options:
  --fio-job FILE      fio job file (default deploy/vm/jobs/default.fio). The guest puts
                      "[global] filename=/dev/etherd/eS.L" in front of it.
                      Shipped jobs: verify.fio (write + crc32c verify), default.fio (4k
                      randread, 1M read, 1M write, 10 s each), quick.fio (3 s randread).
  --mtu N             MTU of the tap and the guest NIC (default 1500)
  --shelf N --slot N  the AoE address the guest waits for (default 1 0)
  --out DIR           results directory (default: a new /tmp/esvm.XXXXXX)
  --accel tcg|kvm     qemu accelerator (default tcg; KVM is not usable on every host)
  --nics N            give the guest N NICs, vmtap0..vmtap{N-1} on the host side
                      (default 1); aoe.ko is told to use all of them
  --smp N, --mem MiB  guest CPUs (default 2) and memory (default 1024)
  --sanboot           boot no kernel of ours: the VM has no disk and runs iPXE (Debian's
                      ipxe.lkrn, unpacked from the ipxe package into the cache) with
                      `ifopen net0 && sanboot aoe:eS.L`; the LUN must hold a bootable system
                      (deploy/cluster/sanboot.sh builds one from --export-boot's files)
  --export-boot DIR   write the kernel (vmlinuz), the initramfs this run would boot
                      (initrd.cpio, with its --guest-script) and the kernel command line
                      (cmdline) into DIR, then exit without booting
  --vm-id N           0..255, the fifth byte of the guest NICs' MACs 52:54:00:e5:N:0i
                      (default 0), so that VMs of concurrent runs on one segment differ
  --aoe-params STR    extra aoe.ko parameters, e.g. "aoe_maxout=32 aoe_deadsecs=10"
  --fio-args STR      extra fio options for the guest's fio command line
  --guest-script FILE a busybox sh script the guest runs instead of the single fio run, once
                      the device is up (for scenarios: md over two LUNs, claims with
                      aoecfg...). It runs with deploy/vm/guest/lib.sh loaded: `ev NAME [text]`
                      reports a step (it lands in events.tsv as the host sees it), `attach
                      NAME CMD...` sends an output (saved as attach-NAME.txt), `run_fio JOB
                      [JSON]` runs fio (the main result goes to /tmp/fio.json). $BDEV is the
                      device, /etc/esvm/job.fio the --fio-job. Its exit status is the run's.
  --guest-tools LIST  extra commands in the guest, comma-separated: mdadm, aoecfg (taken
                      from the host, or from their Debian packages, unpacked, if the host
                      lacks them)
  --append STR        extra guest kernel command-line arguments
  --qemu-arg ARG      one more qemu argument (repeatable)
  --settle S          seconds between starting TARGET and booting the VM (default 1)
  --bzimage           boot the compressed vmlinuz instead of the unpacked vmlinux (slower)
Time limits (seconds; each one ends the run with status 1):
  --boot-timeout S    qemu start -> guest /init running (default 90)
  --wait S            guest: aoe.ko loaded -> device up (default 30)
  --fio-timeout S     guest: fio's run time, or the --guest-script's (default 300)
  --timeout S         the VM as a whole (default 600)
Cache:
  --prepare           only make sure the cached kernel and initramfs exist, then exit
  --rebuild           rebuild the cache first
  --no-install        do not apt-get install missing packages, only name them
                      (also: ETHERSHELF_VM_NO_INSTALL=1)
Environment:
  ETHERSHELF_VM_CACHE       cache directory (default /var/cache/ethershelf-vm)
  ETHERSHELF_VM_KERNEL_PKG  kernel package (default: what linux-image-amd64 depends on)

Results in --out:
  summary.txt    verdict, device (payload=<bytes> of an AoE data frame as aoe.ko
                 negotiated it), timeline, fio table
  summary.json   the same as JSON (jobs: IOPS, MiB/s, latency percentiles, errors)
  fio.json, fio-stderr.txt, aoe.txt (sysfs + debugfs), dmesg.txt
  console.log (guest kernel console), serial1.log (raw results channel),
  events.tsv (when the host saw each guest step), target.log, qemu.log, run.info
Exit status: 0 fio ran and passed; 1 the test failed (target exited, no device, fio error or
verify mismatch, a time limit hit); 2 usage or setup error; 130/143 interrupted.
Needs root. Missing Debian packages are named and installed with apt-get.
EOF
}

# ------------------------------------------------------------------------------- helpers ---
T0_US=${EPOCHREALTIME/[.,]/}
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }   # milliseconds -> "S.d"
log() { printf '[vm %6ss] %s\n' "$(secs $(($(now_ms) - T0_US / 1000)))" "$*" >&2; }
setup_error() { log "error: $*"; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
with_limit() { timeout -k 5 "$@"; }   # with_limit SECONDS CMD...: every helper call is bounded

# ------------------------------------------------------------------------------- options ---
GUEST_SCRIPT="" GUEST_TOOLS="" VM_ID=0 SANBOOT=0 EXPORT_BOOT=""
JOB=$VM_DIR/jobs/default.fio MTU=1500 SHELF=1 SLOT=0 OUT="" ACCEL=tcg NICS=1 SMP=2 MEM=1024
AOE_PARAMS="" FIO_ARGS="" APPEND="" SETTLE=1 BZIMAGE=0
BOOT_TIMEOUT=90 DEV_WAIT=30 FIO_TIMEOUT=300 VM_TIMEOUT=600
PREPARE=0 REBUILD=0 INSTALL=1
[ "${ETHERSHELF_VM_NO_INSTALL:-0}" = 1 ] && INSTALL=0
QEMU_EXTRA=()
TARGET=()

parse_args() {
	local o
	while (($#)); do
		o=$1
		case "$o" in
		-h | --help) usage; exit 0 ;;
		--prepare) PREPARE=1; shift; continue ;;
		--rebuild) REBUILD=1; shift; continue ;;
		--no-install) INSTALL=0; shift; continue ;;
		--bzimage) BZIMAGE=1; shift; continue ;;
		--sanboot) SANBOOT=1; shift; continue ;;
		--) shift; TARGET=("$@"); return ;;
		--fio-job | --mtu | --shelf | --slot | --out | --accel | --nics | --smp | --mem) ;;
		--aoe-params | --fio-args | --append | --qemu-arg | --settle) ;;
		--boot-timeout | --wait | --fio-timeout | --timeout) ;;
		--guest-script | --guest-tools | --vm-id | --export-boot) ;;
		--*) setup_error "unknown option $o (see --help)" ;;
		*) setup_error "unexpected argument '$o' (the target command goes after --; see --help)" ;;
		esac
		(($# >= 2)) || setup_error "$o needs a value"
		case "$o" in
		--fio-job) JOB=$2 ;;
		--mtu) MTU=$2 ;;
		--shelf) SHELF=$2 ;;
		--slot) SLOT=$2 ;;
		--out) OUT=$2 ;;
		--accel) ACCEL=$2 ;;
		--nics) NICS=$2 ;;
		--smp) SMP=$2 ;;
		--mem) MEM=$2 ;;
		--aoe-params) AOE_PARAMS=$2 ;;
		--fio-args) FIO_ARGS=$2 ;;
		--append) APPEND=$2 ;;
		--qemu-arg) QEMU_EXTRA+=("$2") ;;
		--settle) SETTLE=$2 ;;
		--boot-timeout) BOOT_TIMEOUT=$2 ;;
		--wait) DEV_WAIT=$2 ;;
		--fio-timeout) FIO_TIMEOUT=$2 ;;
		--timeout) VM_TIMEOUT=$2 ;;
		--guest-script) GUEST_SCRIPT=$2 ;;
		--guest-tools) GUEST_TOOLS=$2 ;;
		--vm-id) VM_ID=$2 ;;
		--export-boot) EXPORT_BOOT=$2 ;;
		esac
		shift 2
	done
}

check_args() {
	local spec v
	[ "$(id -u)" = 0 ] || setup_error "run as root (network namespace, tap device, qemu)"
	for spec in MTU:mtu SHELF:shelf SLOT:slot NICS:nics SMP:smp MEM:mem SETTLE:settle VM_ID:vm-id \
		BOOT_TIMEOUT:boot-timeout DEV_WAIT:wait FIO_TIMEOUT:fio-timeout VM_TIMEOUT:timeout; do
		v=${spec%%:*}
		is_uint "${!v}" || setup_error "--${spec#*:} must be a whole number, got '${!v}'"
		printf -v "$v" '%d' "$((10#${!v}))"   # "08" is eight, not bad octal
	done
	((MTU >= 576 && MTU <= 65535)) || setup_error "--mtu $MTU is out of range (576..65535)"
	((SHELF <= 65534 && SLOT <= 254)) || setup_error "--shelf must be 0..65534 and --slot 0..254"
	((NICS >= 1 && NICS <= 8)) || setup_error "--nics must be 1..8"
	((VM_ID <= 255)) || setup_error "--vm-id must be 0..255"
	((BOOT_TIMEOUT > 0 && DEV_WAIT > 0 && FIO_TIMEOUT > 0 && VM_TIMEOUT > 0)) ||
		setup_error "time limits must be positive"
	case "$ACCEL" in tcg | kvm) ;; *) setup_error "--accel must be tcg or kvm" ;; esac
	[ "$ACCEL" = kvm ] && { [ -c /dev/kvm ] || setup_error "--accel kvm: /dev/kvm is missing"; }
	[ -r "$JOB" ] || setup_error "fio job file '$JOB' is not readable"
	[ -z "$GUEST_SCRIPT" ] || [ -r "$GUEST_SCRIPT" ] || setup_error "guest script '$GUEST_SCRIPT' is not readable"
	local t
	for t in ${GUEST_TOOLS//,/ }; do
		case "$t" in mdadm | aoecfg) ;; *) setup_error "--guest-tools: unknown tool '$t' (mdadm, aoecfg)" ;; esac
	done
	[ -c /dev/net/tun ] || setup_error "/dev/net/tun is missing (modprobe tun)"
	((PREPARE)) || [ -n "$EXPORT_BOOT" ] || ((${#TARGET[@]})) || setup_error "no target command (put it after --; see --help)"
	JOB=$(cd "$(dirname "$JOB")" && pwd)/$(basename "$JOB")
}

# ------------------------------------------------------------------------- prerequisites ---
APT_UPDATED=0
apt_update_once() {
	((APT_UPDATED)) && return 0
	APT_UPDATED=1
	log "apt-get update"
	with_limit 300 apt-get update -qq >/dev/null 2>&1 || log "warning: apt-get update failed"
}

# install_packages PKG...: apt-get install them, or explain and stop when that is not allowed.
install_packages() {
	((INSTALL)) || setup_error "missing Debian packages: $* (apt-get install $*)"
	log "installing Debian packages: $*"
	apt_update_once
	with_limit 900 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		-o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >/dev/null ||
		setup_error "apt-get install $* failed"
}

# need_tools CMD:PACKAGE...: every CMD must be on PATH; installs the packages of missing ones.
need_tools() {
	local spec missing=()
	for spec in "$@"; do
		command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
	done
	((${#missing[@]})) || return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	install_packages "${missing[@]}"
	for spec in "$@"; do
		command -v "${spec%%:*}" >/dev/null 2>&1 ||
			setup_error "'${spec%%:*}' still missing after installing ${spec#*:}"
	done
}

static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }

check_prereqs() {
	need_tools ip:iproute2 setsid:util-linux flock:util-linux timeout:coreutils \
		qemu-system-x86_64:qemu-system-x86 cpio:cpio fio:fio xz:xz-utils depmod:kmod \
		ldconfig:libc-bin dpkg-deb:dpkg apt-get:apt
	static_busybox || install_packages busybox-static
	static_busybox || setup_error "/bin/busybox is not a static binary (apt-get install busybox-static)"
	PYTHON=/usr/bin/python3
	[ -x "$PYTHON" ] || { need_tools python3:python3-minimal; PYTHON=$(command -v python3); }
}

# ------------------------------------------------------------------ cache: kernel + image ---
# Layout of $CACHE_DIR:
#   kernel/<package>_<version>/  vmlinuz, vmlinux (PVH-bootable ELF), config, modules/*.ko,
#                                load-order (NIC drivers, deps first), aoe.ko in modules/
#   image/base-<key>.cpio        the initramfs minus the per-run part; key = its inputs' hash
#   lock                         flock: one builder at a time

# kernel_package: prints "PACKAGE VERSION" of the kernel to boot (empty when apt cannot tell).
kernel_package() {
	local pkg=${ETHERSHELF_VM_KERNEL_PKG:-} ver=""
	if [ -z "$pkg" ]; then
		# One apt-cache call: the meta package pins the exact image package and version.
		read -r pkg ver < <(with_limit 60 apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
			sed -n 's/^Depends: .*\(linux-image-[^ ,]*\)\( (= \([^)]*\))\)\{0,1\}.*/\1 \3/p' | head -1)
	fi
	if [ -n "$pkg" ] && [ -z "$ver" ]; then
		ver=$(with_limit 60 apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -1)
	fi
	[ -n "$pkg" ] && [ -n "$ver" ] && echo "$pkg $ver"
}

# unpack_vmlinux BZIMAGE OUT: the kernel proper, from the payload the setup header points at.
unpack_vmlinux() {
	local bz=$1 out=$2 setup_sects off len start magic
	u8() { od -An -tu1 -j "$1" -N 1 "$bz" | tr -d ' '; }
	u32() { od -An -tu4 -j "$1" -N 4 "$bz" | tr -d ' '; }
	setup_sects=$(u8 $((0x1f1)))
	off=$(u32 $((0x248)))
	len=$(u32 $((0x24c)))
	[ -n "$setup_sects" ] && [ -n "$off" ] && [ -n "$len" ] && ((len > 0)) || return 1
	((setup_sects == 0)) && setup_sects=4
	start=$(((setup_sects + 1) * 512 + off))
	magic=$(od -An -tx1 -j "$start" -N 4 "$bz" | tr -d ' ')
	payload() { tail -c +$((start + 1)) "$bz" | head -c "$len"; }
	case "$magic" in
	fd377a58) payload | xz -dc --single-stream > "$out" 2>/dev/null ;;
	28b52ffd) need_tools zstd:zstd; payload | zstd -dcq > "$out" 2>/dev/null ;;
	1f8b*) payload | gzip -dc > "$out" 2>/dev/null ;;
	*) log "unknown kernel compression (magic $magic)"; return 1 ;;
	esac
	[ "$(od -An -tx1 -N 4 "$out" 2>/dev/null | tr -d ' ')" = 7f454c46 ]
}

# module_closure MODROOT NAME...: the modules NAME need, dependencies first, one per line.
# Built-in modules are skipped.
module_closure() {
	local root=$1 line rel deps d name
	shift
	declare -A path_of deps_of done_
	while IFS= read -r line; do
		rel=${line%%:*}
		name=${rel##*/}; name=${name%%.ko*}; name=${name//-/_}
		path_of[$name]=$rel
		deps=""
		for d in ${line#*:}; do d=${d##*/}; d=${d%%.ko*}; deps+=" ${d//-/_}"; done
		deps_of[$name]=$deps
	done < "$root/modules.dep"
	visit() {
		local m=$1 dep
		[ -n "${done_[$m]:-}" ] && return 0
		done_[$m]=1
		if [ -z "${path_of[$m]:-}" ]; then
			grep -Eq "/${m//_/[-_]}\.ko" "$root/modules.builtin" && return 0
			log "module $m is neither in modules.dep nor built in"
			return 1
		fi
		for dep in ${deps_of[$m]}; do visit "$dep" || return 1; done
		echo "$m ${path_of[$m]}"
	}
	for name in "$@"; do visit "$name" || return 1; done
}

# build_kernel PACKAGE VERSION DIR: download, unpack, keep only what the VM needs.
build_kernel() {
	local pkg=$1 ver=$2 dir=$3 tmp root kver mods m rel
	tmp=$(mktemp -d "$CACHE_DIR/tmp.kernel.XXXXXX") || setup_error "cannot create a temp dir in $CACHE_DIR"
	chmod 755 "$tmp"
	id _apt >/dev/null 2>&1 && chown _apt "$tmp"
	log "downloading $pkg $ver (apt-get download)"
	(cd "$tmp" && with_limit 600 apt-get download -q "$pkg=$ver" >/dev/null 2>"$tmp/apt.err") ||
		{ cat "$tmp/apt.err" >&2; rm -rf "$tmp"; setup_error "apt-get download $pkg=$ver failed"; }
	log "unpacking $pkg"
	with_limit 300 dpkg-deb -x "$tmp"/*.deb "$tmp/fs" || { rm -rf "$tmp"; setup_error "dpkg-deb -x failed"; }
	root=$(find "$tmp/fs" -mindepth 3 -maxdepth 4 -type d -regex '.*/lib/modules/[^/]+' | head -1)
	[ -n "$root" ] || { rm -rf "$tmp"; setup_error "$pkg holds no modules"; }
	kver=${root##*/}
	# depmod looks under BASE/lib/modules; newer packages ship usr/lib/modules only.
	[ -d "$tmp/fs/lib/modules" ] || ln -s usr/lib "$tmp/fs/lib"
	with_limit 300 depmod -b "$tmp/fs" "$kver" || { rm -rf "$tmp"; setup_error "depmod failed"; }
	root=$tmp/fs/lib/modules/$kver

	rm -rf "$dir.new"
	mkdir -p "$dir.new/modules"
	if ! cp "$tmp/fs/boot/vmlinuz-$kver" "$dir.new/vmlinuz" ||
		! cp "$tmp/fs/boot/config-$kver" "$dir.new/config"; then
		rm -rf "$tmp" "$dir.new"
		setup_error "$pkg has no /boot/vmlinuz-$kver"
	fi
	if grep -q '^CONFIG_PVH=y' "$dir.new/config" && unpack_vmlinux "$dir.new/vmlinuz" "$dir.new/vmlinux"; then
		:
	else
		log "no PVH-bootable vmlinux; the VM will boot the compressed kernel"
		rm -f "$dir.new/vmlinux"
	fi
	# NIC drivers first (in dependency order), md's RAID1 (for scenarios that mirror two
	# LUNs), ext4 with the crc32c it needs (root file systems of diskless boots), then aoe.ko's
	# dependencies; aoe.ko itself is loaded separately, after the NICs
	# are up. Add drivers here (e.g. virtio_blk) as needed.
	mods=$(module_closure "$root" virtio_pci virtio_net raid1 crc32c_generic ext4 aoe) ||
		{ rm -rf "$tmp" "$dir.new"; setup_error "cannot work out the module set"; }
	while read -r m rel; do
		case "$rel" in
		*.ko) cp "$root/$rel" "$dir.new/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$root/$rel" > "$dir.new/modules/$m.ko" ;;
		*.ko.zst) need_tools zstd:zstd; zstd -dcq "$root/$rel" > "$dir.new/modules/$m.ko" ;;
		*.ko.gz) gzip -dc "$root/$rel" > "$dir.new/modules/$m.ko" ;;
		esac || { rm -rf "$tmp" "$dir.new"; setup_error "cannot copy module $rel"; }
		[ "$m" = aoe ] || echo "$m" >> "$dir.new/load-order"
	done <<< "$mods"
	[ -s "$dir.new/modules/aoe.ko" ] || { rm -rf "$tmp" "$dir.new"; setup_error "$pkg has no aoe.ko"; }
	echo "$kver" > "$dir.new/release"
	rm -rf "$tmp" "$dir"
	mv "$dir.new" "$dir"
}

# build_image KDIR OUT: the base initramfs (busybox, modules, fio + its libraries, /init).
build_image() {
	local kdir=$1 out=$2 tmp r lib dirs
	tmp=$(mktemp -d "$CACHE_DIR/tmp.image.XXXXXX") || setup_error "cannot create a temp dir in $CACHE_DIR"
	r=$tmp/root
	mkdir -p "$r"/{bin,usr/bin,dev,proc,sys,tmp,run,etc/esvm,lib/modules/esvm}
	cp /bin/busybox "$r/bin/busybox"
	ln -s busybox "$r/bin/sh"
	cp "$VM_DIR/guest/init.sh" "$r/init"
	cp "$VM_DIR/guest/lib.sh" "$r/lib/esvm.sh"
	chmod 755 "$r/init"
	cp "$kdir"/modules/*.ko "$kdir/load-order" "$r/lib/modules/esvm/"
	cp "$(command -v fio)" "$r/usr/bin/fio"
	# fio's shared libraries (and the dynamic loader) at the paths ldd resolved them to, plus an
	# ld.so.cache for the guest so no LD_LIBRARY_PATH is needed.
	while read -r lib; do
		mkdir -p "$r${lib%/*}"
		cp -L "$lib" "$r$lib" || { rm -rf "$tmp"; setup_error "cannot copy $lib"; }
	done < <(ldd "$(command -v fio)" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
	dirs=$(cd "$r" && find . -name '*.so*' -printf '/%h\n' | sed 's#^/\./#/#' | sort -u)
	printf '%s\n' "$dirs" > "$r/etc/ld.so.conf"
	ldconfig -r "$r" 2>/dev/null || { rm -rf "$tmp"; setup_error "ldconfig -r failed"; }
	echo 'root:x:0:0:root:/:/bin/sh' > "$r/etc/passwd"
	(cd "$r" && find . -mindepth 1 | sort | with_limit 120 cpio -o -H newc -R 0:0 --quiet) > "$out.tmp" ||
		{ rm -rf "$tmp" "$out.tmp"; setup_error "cpio failed"; }
	mv "$out.tmp" "$out"
	rm -rf "$tmp"
}

# prepare_cache: sets KERNEL (file to boot), KDIR and BASE_IMAGE. Holds the cache lock on fd 8
# until release_cache, so a concurrent run cannot delete what this one uses.
prepare_cache() {
	local pkg ver key
	mkdir -p "$CACHE_DIR/kernel" "$CACHE_DIR/image" || setup_error "cannot create $CACHE_DIR"
	exec 8> "$CACHE_DIR/lock"
	flock -w 1200 8 || setup_error "the cache lock $CACHE_DIR/lock is held by another run for 20 minutes"
	find "$CACHE_DIR" -maxdepth 1 -name 'tmp.*' -mmin +60 -exec rm -rf {} + 2>/dev/null

	read -r pkg ver < <(kernel_package)
	[ -n "${ver:-}" ] || { apt_update_once; read -r pkg ver < <(kernel_package); }
	if [ -n "${ver:-}" ]; then
		KDIR=$CACHE_DIR/kernel/${pkg}_${ver}_l$IMAGE_LAYOUT
		if ((REBUILD)) || [ ! -s "$KDIR/release" ]; then
			build_kernel "$pkg" "$ver" "$KDIR"
			find "$CACHE_DIR/kernel" -mindepth 1 -maxdepth 1 ! -path "$KDIR" -exec rm -rf {} +
		fi
	else
		# No package lists (offline?): fall back to whatever kernel is cached.
		KDIR=$(find "$CACHE_DIR/kernel" -mindepth 2 -maxdepth 2 -name release -printf '%h\n' 2>/dev/null | sort | tail -1)
		[ -n "$KDIR" ] || setup_error "cannot resolve linux-image-amd64 with apt-cache, and no kernel is cached"
		log "warning: apt-cache cannot resolve the kernel package; using the cached $(basename "$KDIR")"
	fi

	key=$({
		echo "layout $IMAGE_LAYOUT"
		cat "$KDIR/release" "$KDIR/load-order" "$VM_DIR/guest/init.sh" "$VM_DIR/guest/lib.sh"
		sha256sum "$KDIR/modules/"*.ko | cut -d' ' -f1
		dpkg-query -W fio busybox-static 2>/dev/null
		ldd "$(command -v fio)" | awk '{ print $1, $3 }'
	} | sha256sum | cut -c1-16)
	BASE_IMAGE=$CACHE_DIR/image/base-$key.cpio
	if ((REBUILD)) || [ ! -s "$BASE_IMAGE" ]; then
		log "building the initramfs"
		build_image "$KDIR" "$BASE_IMAGE"
		find "$CACHE_DIR/image" -name 'base-*.cpio' ! -path "$BASE_IMAGE" -delete
	fi
	KERNEL=$KDIR/vmlinuz
	((BZIMAGE)) || [ ! -s "$KDIR/vmlinux" ] || KERNEL=$KDIR/vmlinux
	log "kernel $(cat "$KDIR/release") ($(basename "$KERNEL")), initramfs $(($(stat -c %s "$BASE_IMAGE") >> 20)) MiB"
}
release_cache() { exec 8>&-; }

# ------------------------------------------------------------------------------ network ---
# One namespace per run, named esvm-<pid of this script>. The guest's NICs are taps in it.
NS="esvm-$$"
NS_MADE=0
in_ns() { with_limit 20 ip netns exec "$NS" "$@"; }

# Namespaces left by runs that were killed outright (their pid is gone) are deleted.
reap_stale_namespaces() {
	local ns pid
	while read -r ns _; do
		[[ $ns =~ ^esvm-([0-9]+)$ ]] || continue
		pid=${BASH_REMATCH[1]}
		[ "$pid" = $$ ] && continue
		[ -d "/proc/$pid" ] && grep -qa initiator.sh "/proc/$pid/cmdline" 2>/dev/null && continue
		log "deleting namespace $ns (left by a run that no longer exists)"
		with_limit 20 ip netns del "$ns" 2>/dev/null
	done < <(with_limit 20 ip netns list 2>/dev/null)
}

net_create() {
	with_limit 20 ip netns add "$NS" || setup_error "ip netns add $NS failed"
	NS_MADE=1
	in_ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1
	in_ns ip link set lo up || setup_error "cannot bring lo up in $NS"
}

# net_add_tap NAME: a tap for one guest NIC. (A bridge or veth layout for multipath tests
# would be another function like this one; the target's {IFACE} would then name its port.)
net_add_tap() {
	in_ns ip tuntap add dev "$1" mode tap || setup_error "cannot create tap $1 in $NS"
	in_ns ip link set dev "$1" mtu "$MTU" up || setup_error "cannot set MTU $MTU on $1"
}

TAPS=()
net_setup() {
	local i
	net_create
	for ((i = 0; i < NICS; i++)); do
		net_add_tap "vmtap$i"
		TAPS+=("vmtap$i")
	done
}

# ------------------------------------------------------------------------------- target ---
TARGET_PID=""
TARGET_ARGV=()
target_start() {
	local a ifaces
	ifaces=$(IFS=,; echo "${TAPS[*]}")
	for a in "${TARGET[@]}"; do
		a=${a//\{IFACES\}/$ifaces}
		a=${a//\{IFACE\}/${TAPS[0]}}
		a=${a//\{NETNS\}/$NS}
		a=${a//\{MTU\}/$MTU}
		a=${a//\{OUT\}/$OUT}
		TARGET_ARGV+=("$a")
	done
	log "target (in $NS): ${TARGET_ARGV[*]}"
	# Its own session and process group, so stopping it reaches its children too; the outer
	# timeout bounds it even if this script is killed without a chance to clean up.
	ip netns exec "$NS" setsid timeout -k 5 $((VM_TIMEOUT + BOOT_TIMEOUT + 120)) "${TARGET_ARGV[@]}" \
		< /dev/null > "$OUT/target.log" 2>&1 &
	TARGET_PID=$!
}
target_alive() { [ -n "$TARGET_PID" ] && kill -0 "$TARGET_PID" 2>/dev/null; }

# stop_pid PID [group]: TERM, up to 5 s grace, then KILL. Only for processes started here.
stop_pid() {
	local pid=$1 sig_target=$1 i
	[ -n "$pid" ] || return 0
	[ "${2:-}" = group ] && sig_target=-$pid
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM -- "$sig_target" 2>/dev/null
		for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL -- "$sig_target" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	return 0
}

# ----------------------------------------------------------------------------------- vm ---
QEMU_PID=""
QEMU_RC=""
VM_START_MS=0
HOST_FAILURE=""

# add_guest_tools ROOT: the --guest-tools binaries and their libraries into ROOT. A tool the
# host lacks is unpacked from its Debian package (cached), never installed on the host.
add_guest_tools() {
	local r=$1 t pkg bin lib dir deb
	for t in ${GUEST_TOOLS//,/ }; do
		case "$t" in mdadm) pkg=mdadm ;; aoecfg) pkg=aoetools ;; esac
		bin=$(command -v "$t" 2>/dev/null || true)
		if [ -z "$bin" ]; then
			dir=$CACHE_DIR/tools/$pkg
			if [ ! -x "$dir/sbin/$t" ] && [ ! -x "$dir/usr/sbin/$t" ]; then
				log "unpacking $pkg for the guest's $t (apt-get download)"
				rm -rf "$dir" && mkdir -p "$dir" || setup_error "cannot create $dir"
				(cd "$dir" && with_limit 300 apt-get download -q "$pkg" >/dev/null 2>&1) ||
					{ apt_update_once; (cd "$dir" && with_limit 300 apt-get download -q "$pkg" >/dev/null); } ||
					setup_error "apt-get download $pkg failed (needed for the guest's $t)"
				deb=$(ls "$dir"/*.deb)
				dpkg-deb -x "$deb" "$dir" || setup_error "cannot unpack $deb"
			fi
			bin=$dir/sbin/$t
			[ -x "$bin" ] || bin=$dir/usr/sbin/$t
		fi
		[ -x "$bin" ] || setup_error "no $t binary found"
		mkdir -p "$r/usr/bin"
		cp "$bin" "$r/usr/bin/$t" || setup_error "cannot copy $bin"
		while read -r lib; do
			[ -e "$r$lib" ] && continue
			mkdir -p "$r${lib%/*}"
			cp -L "$lib" "$r$lib" || setup_error "cannot copy $lib"
		done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
	done
}

# The per-run part of the initramfs, appended to the cached base image.
vm_initrd() {
	local r=$WORK/overlay
	mkdir -p "$r/etc/esvm"
	cp "$JOB" "$r/etc/esvm/job.fio"
	[ -z "$GUEST_SCRIPT" ] || cp "$GUEST_SCRIPT" "$r/etc/esvm/script.sh"
	add_guest_tools "$r"
	{
		printf 'ESVM_DEV=e%s.%s\n' "$SHELF" "$SLOT"
		printf 'ESVM_MTU=%s\nESVM_NICS=%s\n' "$MTU" "$NICS"
		printf 'ESVM_WAIT=%s\nESVM_FIO_TIMEOUT=%s\n' "$DEV_WAIT" "$FIO_TIMEOUT"
		printf 'ESVM_AOE_PARAMS=%q\nESVM_FIO_ARGS=%q\n' "$AOE_PARAMS" "$FIO_ARGS"
	} > "$r/etc/esvm.conf"
	{ cat "$BASE_IMAGE"; (cd "$r" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet); } \
		> "$WORK/initrd.cpio" || setup_error "cannot assemble the initramfs"
}

guest_cmdline() {
	echo "console=ttyS0 quiet loglevel=4 panic=1 8250.nr_uarts=2 ipv6.disable=1 mitigations=off ${APPEND}"
}

# ipxe_lkrn: the path of Debian's ipxe.lkrn (unpacked from the ipxe package into the cache).
ipxe_lkrn() {
	local dir=$CACHE_DIR/tools/ipxe
	[ -s /boot/ipxe.lkrn ] && { echo /boot/ipxe.lkrn; return; }
	if [ ! -s "$dir/boot/ipxe.lkrn" ]; then
		log "unpacking Debian's ipxe package for ipxe.lkrn (apt-get download)"
		rm -rf "$dir" && mkdir -p "$dir" || setup_error "cannot create $dir"
		(cd "$dir" && with_limit 300 apt-get download -q ipxe >/dev/null 2>&1) ||
			{ apt_update_once; (cd "$dir" && with_limit 300 apt-get download -q ipxe >/dev/null); } ||
			setup_error "apt-get download ipxe failed"
		dpkg-deb -x "$(ls "$dir"/*.deb)" "$dir" || setup_error "cannot unpack the ipxe package"
	fi
	[ -s "$dir/boot/ipxe.lkrn" ] || setup_error "the ipxe package has no boot/ipxe.lkrn"
	echo "$dir/boot/ipxe.lkrn"
}

vm_args() {
	local i rom=""
	VM_ARGS=(-nodefaults -no-user-config -display none -no-reboot -machine pc
		-accel "$ACCEL" -smp "$SMP" -m "$MEM"
		-serial "file:$OUT/console.log" -serial "file:$OUT/serial1.log")
	if ((SANBOOT)); then
		# No disk, no kernel of ours: iPXE boots the LUN (the NICs' own option ROMs stay off).
		VM_ARGS+=(-kernel "$IPXE_LKRN" -append "ifopen net0 && sanboot aoe:e$SHELF.$SLOT")
		rom=",romfile="
	else
		VM_ARGS+=(-kernel "$KERNEL" -initrd "$WORK/initrd.cpio" -append "$(guest_cmdline)")
	fi
	[ "$ACCEL" = kvm ] && VM_ARGS+=(-cpu host)
	for ((i = 0; i < NICS; i++)); do
		VM_ARGS+=(-netdev "tap,id=nic$i,ifname=${TAPS[$i]},script=no,downscript=no"
			-device "virtio-net-pci,netdev=nic$i,mac=52:54:00:e5:$(printf %02x "$VM_ID"):$(printf %02x $((i + 1))),host_mtu=$MTU$rom")
	done
	VM_ARGS+=("${QEMU_EXTRA[@]}")
}

vm_start() {
	vm_args
	: > "$OUT/serial1.log"
	: > "$OUT/events.tsv"
	VM_START_MS=$(now_ms)
	# The outer timeout is a backstop for the watch loop below.
	ip netns exec "$NS" timeout -k 5 $((VM_TIMEOUT + 30)) qemu-system-x86_64 "${VM_ARGS[@]}" \
		< /dev/null >> "$OUT/qemu.log" 2>&1 &
	QEMU_PID=$!
}

# Records, once per step, when the host first saw it on the results channel.
declare -A SEEN=()
note_events() {
	local name
	while read -r name; do
		[ -n "${SEEN[$name]:-}" ] && continue
		SEEN[$name]=$(($(now_ms) - VM_START_MS))
		printf '%s\t%s\n' "${SEEN[$name]}" "$name" >> "$OUT/events.tsv"
		case "$name" in
		init) log "guest /init running ($(secs "${SEEN[$name]}") s after qemu start)" ;;
		device_up) log "guest has /dev/etherd/e$SHELF.$SLOT up ($(secs "${SEEN[$name]}") s)" ;;
		fio_end) log "fio finished ($(secs "${SEEN[$name]}") s)" ;;
		fail) log "guest reports: $(grep -a -m1 '^ESVM ev fail' "$OUT/serial1.log" | cut -d' ' -f5- | tr -d '\r')" ;;
		esac
	done < <(sed -n 's/^ESVM ev \([a-z0-9_]*\) .*/\1/p' "$OUT/serial1.log")
}

# vm_watch: polls until qemu exits; enforces the time limits; stops the VM when the target dies.
vm_watch() {
	local t
	while kill -0 "$QEMU_PID" 2>/dev/null; do
		note_events
		t=$(($(now_ms) - VM_START_MS))
		if [ -z "${SEEN[init]:-}" ] && ((t > BOOT_TIMEOUT * 1000)); then
			HOST_FAILURE="the guest did not reach /init within --boot-timeout ${BOOT_TIMEOUT} s (accel $ACCEL)"
		elif [ -n "${SEEN[init]:-}" ] && [ -z "${SEEN[device_up]:-}${SEEN[fail]:-}" ] &&
			((t > SEEN[init] + (DEV_WAIT + 30) * 1000)); then
			HOST_FAILURE="the guest neither found the device nor gave up within --wait ${DEV_WAIT} s"
		elif [ -n "${SEEN[fio_start]:-}" ] && [ -z "${SEEN[fio_end]:-}" ] &&
			((t > SEEN[fio_start] + (FIO_TIMEOUT + 60) * 1000)); then
			HOST_FAILURE="fio in the guest did not stop after --fio-timeout ${FIO_TIMEOUT} s"
		elif ((t > VM_TIMEOUT * 1000)); then
			HOST_FAILURE="the VM ran longer than --timeout ${VM_TIMEOUT} s"
		elif ! target_alive && [ -z "${SEEN[result]:-}" ]; then
			HOST_FAILURE="the target exited while the guest was using it"
		elif [ -n "${SEEN[result]:-}" ] && ((t > SEEN[result] + 30000)); then
			log "the guest reported its result but did not power off within 30 s; stopping it"
			stop_pid "$QEMU_PID"
			QEMU_RC=0
			break
		fi
		[ -z "$HOST_FAILURE" ] || break
		sleep 0.2
	done
	if [ -n "$HOST_FAILURE" ]; then
		log "stopping the VM: $HOST_FAILURE"
		stop_pid "$QEMU_PID"
		QEMU_RC=stopped
	elif [ -n "$QEMU_RC" ]; then
		:
	else
		wait "$QEMU_PID" 2>/dev/null
		QEMU_RC=$?
	fi
	QEMU_PID=""
	note_events
	log "VM off $(secs $(($(now_ms) - VM_START_MS))) s after qemu start (qemu status $QEMU_RC)"
}

# ------------------------------------------------------------------------------ results ---
write_run_info() {
	local cmd
	cmd=$(printf '%q ' "${TARGET_ARGV[@]}")
	{
		printf 'kernel\t%s\n' "$(cat "$KDIR/release")"
		if ((SANBOOT)); then
			printf 'kernel_file\t%s\n' "the LUN's, through iPXE sanboot"
		else
			printf 'kernel_file\t%s\n' "$(basename "$KERNEL")"
		fi
		printf 'accel\t%s\nmtu\t%s\nnics\t%s\nsmp\t%s\nmem_mib\t%s\n' "$ACCEL" "$MTU" "$NICS" "$SMP" "$MEM"
		printf 'device\te%s.%s\n' "$SHELF" "$SLOT"
		printf 'netns\t%s\niface\t%s\n' "$NS" "${TAPS[0]}"
		printf 'fio_job\t%s\nfio_timeout\t%s\n' "$JOB" "$FIO_TIMEOUT"
		printf 'target\t%s\n' "${cmd% }"
		printf 'target_alive_at_end\t%s\n' "$1"
		printf 'qemu_status\t%s\n' "$QEMU_RC"
		printf 'host_failure\t%s\n' "$HOST_FAILURE"
		printf 'script_seconds\t%s\n' "$((($(now_ms) - T0_US / 1000) / 1000))"
	} > "$OUT/run.info"
}

# --------------------------------------------------------------------------------- main ---
WORK=""
# shellcheck disable=SC2317 # cleanup and on_signal run from traps
cleanup() {
	trap - EXIT INT TERM
	stop_pid "$QEMU_PID"
	stop_pid "$TARGET_PID" group
	if ((NS_MADE)); then
		with_limit 20 ip netns del "$NS" 2>/dev/null || log "warning: could not delete namespace $NS"
	fi
	[ -n "$WORK" ] && rm -rf "$WORK"
}
# shellcheck disable=SC2317
on_signal() { log "interrupted ($1); cleaning up"; cleanup; exit "$2"; }

main() {
	parse_args "$@"
	check_args
	trap cleanup EXIT
	trap 'on_signal INT 130' INT
	trap 'on_signal TERM 143' TERM
	check_prereqs
	prepare_cache
	if ((PREPARE)); then
		release_cache
		echo "$KERNEL"
		echo "$BASE_IMAGE"
		exit 0
	fi

	[ -n "$OUT" ] || OUT=$EXPORT_BOOT
	[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/esvm.XXXXXX) || setup_error "cannot create a results directory"
	mkdir -p "$OUT" || setup_error "cannot create $OUT"
	OUT=$(cd "$OUT" && pwd)
	rm -f "$OUT"/{summary.txt,summary.json,fio.json,fio-stderr.txt,aoe.txt,dmesg.txt} \
		"$OUT"/{console.log,serial1.log,events.tsv,target.log,qemu.log,run.info}
	WORK=$(mktemp -d /tmp/esvm-work.XXXXXX) || setup_error "cannot create a work directory"
	vm_initrd
	release_cache
	if [ -n "$EXPORT_BOOT" ]; then
		mkdir -p "$EXPORT_BOOT" || setup_error "cannot create $EXPORT_BOOT"
		cp "$KDIR/vmlinuz" "$EXPORT_BOOT/vmlinuz" && cp "$WORK/initrd.cpio" "$EXPORT_BOOT/initrd.cpio" &&
			guest_cmdline > "$EXPORT_BOOT/cmdline" || setup_error "cannot write to $EXPORT_BOOT"
		log "boot files in $EXPORT_BOOT: vmlinuz, initrd.cpio ($(($(stat -c %s "$WORK/initrd.cpio") >> 20)) MiB), cmdline"
		exit 0
	fi
	((SANBOOT)) && IPXE_LKRN=$(ipxe_lkrn)

	reap_stale_namespaces
	net_setup
	target_start
	sleep "$SETTLE"
	local alive=yes
	if ! target_alive; then
		HOST_FAILURE="the target exited before the VM started"
		log "$HOST_FAILURE; its output:"
		tail -n 20 "$OUT/target.log" | sed 's/^/  | /' >&2
		QEMU_RC=not-started
		alive=no
	else
		log "booting the VM (accel $ACCEL, MTU $MTU, $NICS NIC(s), limit $VM_TIMEOUT s)"
		vm_start
		vm_watch
		target_alive || alive=no
		[ "$alive" = no ] && [ -z "$HOST_FAILURE" ] && HOST_FAILURE="the target was not running when the VM had finished"
		stop_pid "$TARGET_PID" group
		TARGET_PID=""
		if [ -z "${SEEN[init]:-}" ] && [ -z "$HOST_FAILURE" ] && [ "$QEMU_RC" != 0 ]; then
			# qemu itself could not run the VM: a setup problem, not a test result.
			HOST_FAILURE="qemu failed before the guest booted (status $QEMU_RC; see qemu.log)"
			log "$HOST_FAILURE:"
			tail -n 20 "$OUT/qemu.log" | sed 's/^/  | /' >&2
			write_run_info "$alive"
			with_limit 120 "$PYTHON" "$VM_DIR/summarize.py" "$OUT" > /dev/null
			exit 2
		fi
	fi
	write_run_info "$alive"

	local verdict=1
	with_limit 120 "$PYTHON" "$VM_DIR/summarize.py" "$OUT"
	verdict=$?
	case "$verdict" in
	0) log "PASSED; results in $OUT" ;;
	1) log "FAILED; results in $OUT (summary.txt, console.log, target.log)" ;;
	*)
		log "the summarizer failed (status $verdict); results in $OUT"
		{
			echo "verdict: FAILED"
			echo "  - deploy/vm/summarize.py failed (status $verdict); the guest's steps were:"
			grep -a '^ESVM ev' "$OUT/serial1.log" 2>/dev/null | tr -d '\r' | sed 's/^/  /'
		} > "$OUT/summary.txt"
		verdict=1
		;;
	esac
	exit "$verdict"
}

main "$@"
