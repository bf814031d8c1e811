# shellcheck shell=bash
# Shared helpers for berth's test scripts. Source it; do not run it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Registry under test (registry_start):
#   REGISTRY_IMPL=berth (default)  $BERTH_BIN serve --listen ADDR --data-dir DIR
#                                  BERTH_BIN defaults to ${CARGO_TARGET_DIR:-$ROOT/target}/debug/berth
#   REGISTRY_IMPL=distribution     CNCF distribution 2.8.x (/usr/bin/docker-registry, Debian's
#                                  docker-registry package), filesystem storage, deletes enabled.
#                                  A stand-in to validate these scripts; it lacks the referrers API.
#   REGISTRY_CMD='...'             any other registry: a bash command line in which {addr}
#                                  (127.0.0.1:PORT), {port} and {data} (a fresh empty dir) are
#                                  replaced. Takes precedence over REGISTRY_IMPL.
#   REGISTRY_START_TIMEOUT         seconds to wait for GET /v2/ (default 60).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BERTH_TOOLS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools"
BERTH_BIN="${BERTH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/berth}"

# Pinned tool versions (all resolve through the Go module proxy with Go >= 1.24).
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"   # github.com/google/go-containerregistry
ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"      # oras.land/oras
REGCTL_VERSION="${REGCTL_VERSION:-v0.11.7}" # github.com/regclient/regclient

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Put Go-installed tools on PATH (crane, oras, regctl).
lib_setup_path() {
  local gobin
  if command -v go >/dev/null 2>&1; then
    gobin="$(go env GOBIN)"
    [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
  else
    gobin="$HOME/go/bin"
  fi
  case ":$PATH:" in *":$gobin:"*) ;; *) PATH="$gobin:$PATH" ;; esac
  [ -d /usr/local/go/bin ] && case ":$PATH:" in *":/usr/local/go/bin:"*) ;; *) PATH="$PATH:/usr/local/go/bin" ;; esac
  export PATH
}
lib_setup_path

# ---------------------------------------------------------------------------
# Cleanup: everything registered here is undone by one EXIT trap.
# ---------------------------------------------------------------------------
_LIB_PIDS=()      # process-group leaders to kill
_LIB_TMPDIRS=()   # directories to remove
_LIB_CLEANUP_HOOKS=()

lib_cleanup() {
  local rc=$? pid hook d
  set +e
  for hook in "${_LIB_CLEANUP_HOOKS[@]}"; do "$hook"; done
  for pid in "${_LIB_PIDS[@]}"; do _lib_kill_tree "$pid"; done
  for d in "${_LIB_TMPDIRS[@]}"; do
    # podman/vfs storage can leave read-only dirs behind
    [ -d "$d" ] && { chmod -R u+w "$d" 2>/dev/null; rm -rf "$d"; }
  done
  return "$rc"
}
trap lib_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

lib_on_exit() { _LIB_CLEANUP_HOOKS+=("$1"); }

# lib_tmpdir VAR [LABEL]: VAR=a new temp dir, removed on exit (KEEP_TMP=1 keeps it for debugging).
# (Sets a variable rather than printing: a $(...) subshell could not register the cleanup.)
lib_tmpdir() {
  local _d
  _d="$(mktemp -d "${TMPDIR:-/tmp}/berth-${2:-tmp}.XXXXXX")"
  [ "${KEEP_TMP:-0}" = 1 ] || _LIB_TMPDIRS+=("$_d")
  printf -v "$1" '%s' "$_d"
}

# Kill a process group started with setsid (falls back to the single pid).
_lib_kill_tree() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null || true
}

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# ---------------------------------------------------------------------------
# Registry lifecycle
# ---------------------------------------------------------------------------
# After registry_start: REGISTRY_HOST (127.0.0.1:PORT), REGISTRY_URL (http://...),
# REGISTRY_PID, REGISTRY_LOG, REGISTRY_DATA. One registry at a time.
REGISTRY_PID=""

registry_impl_name() {
  if [ -n "${REGISTRY_CMD:-}" ]; then echo "custom"; else echo "${REGISTRY_IMPL:-berth}"; fi
}

# Installs docker-registry (distribution 2.8.x) when missing.
ensure_distribution() {
  command -v docker-registry >/dev/null 2>&1 && return 0
  log "installing docker-registry (CNCF distribution) with apt"
  apt_install docker-registry
  # Debian's package enables a service on :5000 where an init system runs it; we only want the binary.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
}

# apt-get install, running `apt-get update` only when the lists are empty or the install fails.
apt_install() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  local lists=(/var/lib/apt/lists/*_Packages*)
  if [ ! -e "${lists[0]}" ]; then
    "${sudo[@]}" apt-get update -qq
  fi
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" </dev/null; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" </dev/null
  fi
}

_registry_write_distribution_config() {
  local cfg=$1 addr=$2 data=$3
  cat >"$cfg" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $addr
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

# registry_start [NAME]: start a fresh registry with an empty data dir on a free port.
registry_start() {
  local name=${1:-registry} impl attempt port addr dir cmd timeout deadline
  impl="$(registry_impl_name)"
  timeout="${REGISTRY_START_TIMEOUT:-60}"
  [ -z "$REGISTRY_PID" ] || registry_stop
  lib_tmpdir dir "$name"
  REGISTRY_DATA="$dir/data"
  REGISTRY_LOG="$dir/registry.log"
  mkdir -p "$REGISTRY_DATA"
  case "$impl" in
    berth) [ -x "$BERTH_BIN" ] || die "berth binary not found at $BERTH_BIN (run: cargo build -p berth, or set BERTH_BIN)" ;;
    distribution) ensure_distribution ;;
    custom) ;;
    *) die "unknown REGISTRY_IMPL=$impl (berth|distribution, or set REGISTRY_CMD)" ;;
  esac
  # The server gets none of the variables these scripts set for clients or for themselves.
  local -a unset_env=()
  local v
  for v in REGISTRY_AUTH_FILE DOCKER_CONFIG CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF \
    REGISTRY_CMD REGISTRY_IMPL REGISTRY_START_TIMEOUT REGISTRY_HOST REGISTRY_URL REGISTRY_PID REGISTRY_LOG REGISTRY_DATA; do
    unset_env+=(-u "$v")
  done
  for attempt in 1 2 3; do
    port="$(free_port)"
    addr="127.0.0.1:$port"
    : >"$REGISTRY_LOG"
    case "$impl" in
      berth)
        setsid env "${unset_env[@]}" "$BERTH_BIN" serve --listen "$addr" --data-dir "$REGISTRY_DATA" >>"$REGISTRY_LOG" 2>&1 </dev/null &
        ;;
      distribution)
        _registry_write_distribution_config "$dir/config.yml" "$addr" "$REGISTRY_DATA"
        # distribution reads every REGISTRY_* variable as a config override: start it without any.
        for v in $(compgen -e); do
          case "$v" in REGISTRY_*) unset_env+=(-u "$v") ;; esac
        done
        setsid env "${unset_env[@]}" docker-registry serve "$dir/config.yml" >>"$REGISTRY_LOG" 2>&1 </dev/null &
        ;;
      custom)
        cmd="${REGISTRY_CMD//\{addr\}/$addr}"
        cmd="${cmd//\{port\}/$port}"
        cmd="${cmd//\{data\}/$REGISTRY_DATA}"
        setsid env "${unset_env[@]}" bash -c "exec $cmd" >>"$REGISTRY_LOG" 2>&1 </dev/null &
        ;;
    esac
    REGISTRY_PID=$!
    _LIB_PIDS+=("$REGISTRY_PID")
    REGISTRY_HOST="$addr"
    REGISTRY_URL="http://$addr"
    deadline=$((SECONDS + timeout))
    while [ "$SECONDS" -lt "$deadline" ]; do
      if ! kill -0 "$REGISTRY_PID" 2>/dev/null; then
        break
      fi
      if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$REGISTRY_URL/v2/" 2>/dev/null)" = 200 ]; then
        log "$impl registry ($name) ready at $REGISTRY_URL (pid $REGISTRY_PID, log $REGISTRY_LOG)"
        export REGISTRY_HOST REGISTRY_URL REGISTRY_PID REGISTRY_LOG REGISTRY_DATA
        return 0
      fi
      sleep 0.2
    done
    if kill -0 "$REGISTRY_PID" 2>/dev/null; then
      log "$impl registry did not answer 200 on GET $REGISTRY_URL/v2/ within ${timeout}s"
      registry_log_tail 40
      registry_stop
      return 1
    fi
    log "$impl registry exited during startup (attempt $attempt)"
    registry_log_tail 40
    REGISTRY_PID=""
    # a lost race for the port is worth another try; anything else fails the same way again
    grep -qiE 'address (already )?in use' "$REGISTRY_LOG" || return 1
  done
  return 1
}

registry_log_tail() {
  local n=$1
  [ -f "${REGISTRY_LOG:-}" ] || return 0
  printf -- '----- last %s lines of %s -----\n' "$n" "$REGISTRY_LOG" >&2
  tail -n "$n" "$REGISTRY_LOG" >&2
  printf -- '-----\n' >&2
}

registry_stop() {
  [ -n "$REGISTRY_PID" ] || return 0
  _lib_kill_tree "$REGISTRY_PID"
  REGISTRY_PID=""
}

# Fail if the registry died while we were using it.
registry_alive() {
  [ -n "$REGISTRY_PID" ] && kill -0 "$REGISTRY_PID" 2>/dev/null
}
