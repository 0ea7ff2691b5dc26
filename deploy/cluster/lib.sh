# shellcheck shell=bash
# Shared by the cluster scenario drivers (deploy/cluster/md.sh, handoff.sh): a segment of
# their own (a namespace with bridges), shelves in namespaces of their own on it, and waiting
# for the guest's steps. Every namespace and process made here is removed by cl_cleanup.

CL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CL_ID=escl-$$
CL_NS=$CL_ID            # the segment: bridges br0, br1, ...
CL_NAMESPACES=()
declare -A CL_SHELF_PID=()
CL_T0=$SECONDS

cl_say() { echo "[$(basename "$0") $((SECONDS - CL_T0))s] $*"; }
cl_fail() { cl_say "FAIL: $*"; exit 1; }

# cl_init NAME HELP_END ARGS...: the drivers' options (--out DIR, --keep, --help: lines 2 to
# HELP_END of the script), root, the results directory OUT (KEEP set when it stays) and the
# engine binary.
cl_init() {
  local name=$1 help_end=$2
  shift 2
  OUT= KEEP=
  while (($#)); do
    case "$1" in
      --out) OUT=$2; KEEP=1; shift 2 ;;
      --keep) KEEP=1; shift ;;
      -h | --help) sed -n "2,${help_end}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) echo "$name.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
  done
  [ "$(id -u)" = 0 ] || { echo "$name.sh: run as root" >&2; exit 2; }
  OUT=${OUT:-$(mktemp -d "/var/tmp/ethershelf-$name.XXXXXX")}
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  cl_binaries
}

# cl_binaries: ETHERSHELF (the engine) from $ETHERSHELF_BIN or the workspace's newest build.
cl_binaries() {
  ETHERSHELF=${ETHERSHELF_BIN:-}
  if [ -z "$ETHERSHELF" ]; then
    # The newer of the release and debug builds.
    ETHERSHELF=$(ls -t "$CL_ROOT"/target/{release,debug}/ethershelf 2>/dev/null | head -n 1)
  fi
  [ -x "${ETHERSHELF:-}" ] || cl_fail "no ethershelf binary: cargo build --release (or set ETHERSHELF_BIN)"
}

# cl_segment N MTU: the segment namespace with bridges br0..br{N-1}.
cl_segment() {
  local i
  ip netns add "$CL_NS" || cl_fail "ip netns add $CL_NS"
  CL_NAMESPACES+=("$CL_NS")
  ip -n "$CL_NS" link set lo up
  for ((i = 0; i < $1; i++)); do
    ip -n "$CL_NS" link add "br$i" type bridge
    ip -n "$CL_NS" link set "br$i" mtu "$2" up
  done
}

# cl_shelf_ns SHELF MTU: shelf SHELF's namespace, with port sp0 on br0 of the segment.
cl_shelf_ns() {
  local ns=$CL_ID-s$1
  ip netns add "$ns" || cl_fail "ip netns add $ns"
  CL_NAMESPACES+=("$ns")
  ip -n "$ns" link set lo up
  ip -n "$ns" link add sp0 mtu "$2" type veth peer name "s$1p0" mtu "$2" netns "$CL_NS"
  ip -n "$ns" link set sp0 up
  ip -n "$CL_NS" link set "s$1p0" master br0 up
}

# cl_shelf_config SHELF DIR LUN_FILE LENGTH: a config in DIR/shelf.yaml (one file LUN, slot 0,
# made with LENGTH if missing; LENGTH empty: the file exists).
cl_shelf_config() {
  local lun="{ slot: 0, file: $3, length: $4, create: true }"
  [ -n "$4" ] || lun="{ slot: 0, file: $3 }"
  mkdir -p "$2/state"
  cat >"$2/shelf.yaml" <<YAML
shelf: $1
ports: [ { interface: sp0, mode: packet } ]
state_dir: $2/state
admin: { socket: $2/admin.sock }
metrics: { listen: "127.0.0.1:9478" }
luns:
  - $lun
YAML
}

# cl_shelf_start SHELF DIR: serve DIR/shelf.yaml in the shelf's namespace (log: DIR/shelf.log).
cl_shelf_start() {
  ip netns exec "$CL_ID-s$1" setsid "$ETHERSHELF" serve --config "$2/shelf.yaml" >>"$2/shelf.log" 2>&1 &
  CL_SHELF_PID[$1]=$!
  cl_say "shelf $1 started (pid ${CL_SHELF_PID[$1]})"
}

# cl_shelf_kill SHELF: SIGKILL, as a power cut or a crash would.
cl_shelf_kill() {
  local pid=${CL_SHELF_PID[$1]:-}
  [ -n "$pid" ] || return 0
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  CL_SHELF_PID[$1]=
  cl_say "shelf $1 killed (SIGKILL)"
}

# cl_shelf_ctl SHELF DIR CMD...: a console command on a running shelf.
cl_shelf_ctl() {
  local s=$1 d=$2
  shift 2
  "$ETHERSHELF" ctl --config "$d/shelf.yaml" "$@"
}

# cl_wait_event OUT NAME SECONDS [PID]: until the guest reported step NAME (events.tsv of a
# running harness), the harness PID ended, or the time is up (status 1 then).
cl_wait_event() {
  local deadline=$((SECONDS + $3))
  until grep -qsP "\t$2\$" "$1/events.tsv"; do
    ((SECONDS < deadline)) || return 1
    [ -z "${4:-}" ] || kill -0 "$4" 2>/dev/null || return 1
    sleep 0.5
  done
}

cl_cleanup() {
  local s ns
  for s in "${!CL_SHELF_PID[@]}"; do
    [ -z "${CL_SHELF_PID[$s]}" ] || kill -TERM "${CL_SHELF_PID[$s]}" 2>/dev/null
  done
  sleep 0.5
  for s in "${!CL_SHELF_PID[@]}"; do
    [ -z "${CL_SHELF_PID[$s]}" ] || kill -KILL "${CL_SHELF_PID[$s]}" 2>/dev/null
  done
  for s in "${!CL_SHELF_PID[@]}"; do
    [ -z "${CL_SHELF_PID[$s]}" ] || wait "${CL_SHELF_PID[$s]}" 2>/dev/null
    CL_SHELF_PID[$s]=
  done
  # The harness deletes its own namespace; give it a moment before the segment goes.
  sleep 1
  for ns in "${CL_NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
}

# cl_traps: on exit, the harness runs in CL_PIDS get SIGTERM, then shelves and namespaces go.
CL_PIDS=()
cl_finish() {
  local p
  for p in "${CL_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  cl_cleanup
  wait 2>/dev/null
}
cl_traps() {
  trap cl_finish EXIT
  trap 'exit 130' INT TERM
}
