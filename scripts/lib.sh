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
#   BERTH_AUTH_MODE=token|none     berth's auth.mode (default token, the product default). With
#                                  token, berth starts with BERTH_ADMIN_PASSWORD set to a random
#                                  password, and registry_start exports REGISTRY_USER=admin and
#                                  REGISTRY_PASSWORD for the clients; rcurl adds them to curl.
#   BERTH_BACKEND=pg-s3            berth on PostgreSQL + S3 instead of SQLite + disk: every
#                                  registry_start gets a fresh database (CREATE DATABASE) on the
#                                  server of BERTH_TEST_POSTGRES_URL and a fresh key prefix in the
#                                  bucket of BERTH_TEST_S3_* (as set by services_start below or
#                                  by sourcing target/services.env).
#
# Backing services (services_start): a throwaway PostgreSQL cluster and a versitygw S3 server,
# see the "Backing services" section below and scripts/services.sh.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BERTH_TOOLS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools"
BERTH_BIN="${BERTH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/berth}"

# Pinned tool versions (all resolve through the Go module proxy with Go >= 1.24).
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"   # github.com/google/go-containerregistry
ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"      # oras.land/oras
REGCTL_VERSION="${REGCTL_VERSION:-v0.11.7}" # github.com/regclient/regclient
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}" # github.com/versity/versitygw (S3 server for tests)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Where `go install` puts binaries.
go_bin_dir() {
  local gobin
  if command -v go >/dev/null 2>&1; then
    gobin="$(go env GOBIN)"
    [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
  else
    gobin="$HOME/go/bin"
  fi
  printf '%s\n' "$gobin"
}

# Put Go-installed tools on PATH (crane, oras, regctl, versitygw).
lib_setup_path() {
  local gobin
  gobin="$(go_bin_dir)"
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

# For messages: the implementation, and berth's backends when they are not the default.
registry_label() {
  local impl
  impl="$(registry_impl_name)"
  if [ "$impl" = berth ] && [ "${BERTH_BACKEND:-fs}" = pg-s3 ]; then echo "berth (postgres+s3)"; else echo "$impl"; fi
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
  local -a backend=() auth_env=()
  REGISTRY_USER="" REGISTRY_PASSWORD=""
  case "$impl" in
    berth)
      case "${BERTH_AUTH_MODE:-token}" in
        token)
          REGISTRY_USER=admin
          REGISTRY_PASSWORD="pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
          # Rate limits off: the suites make thousands of requests as one user.
          auth_env=(BERTH_AUTH__MODE=token BERTH_ADMIN_PASSWORD="$REGISTRY_PASSWORD" BERTH_RATE_LIMIT__ENABLED=false)
          ;;
        none) auth_env=(BERTH_AUTH__MODE=none) ;;
        *) die "unknown BERTH_AUTH_MODE=$BERTH_AUTH_MODE (token|none)" ;;
      esac
      [ -x "$BERTH_BIN" ] || die "berth binary not found at $BERTH_BIN (run: cargo build -p berth, or set BERTH_BIN)"
      case "${BERTH_BACKEND:-fs}" in
        fs|sqlite|default) ;;
        pg-s3)
          berth_pg_s3_backend "$name" || return 1
          backend=("${BERTH_BACKEND_ENV[@]}" "$BERTH_BIN" serve --database-url "$BERTH_BACKEND_DB_URL" --storage "$BERTH_BACKEND_STORAGE_URL")
          ;;
        *) die "unknown BERTH_BACKEND=$BERTH_BACKEND (fs|pg-s3)" ;;
      esac
      ;;
    distribution) ensure_distribution ;;
    custom) ;;
    *) die "unknown REGISTRY_IMPL=$impl (berth|distribution, or set REGISTRY_CMD)" ;;
  esac
  # The server gets none of the variables these scripts set for clients or for themselves.
  local -a unset_env=()
  local v
  for v in REGISTRY_AUTH_FILE DOCKER_CONFIG CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF \
    REGISTRY_CMD REGISTRY_IMPL REGISTRY_START_TIMEOUT REGISTRY_HOST REGISTRY_URL REGISTRY_PID REGISTRY_LOG REGISTRY_DATA \
    REGISTRY_USER REGISTRY_PASSWORD BERTH_BACKEND BERTH_AUTH_MODE; do
    unset_env+=(-u "$v")
  done
  for attempt in 1 2 3; do
    port="$(free_port)"
    addr="127.0.0.1:$port"
    : >"$REGISTRY_LOG"
    case "$impl" in
      berth)
        [ ${#backend[@]} -gt 0 ] || backend=("$BERTH_BIN" serve)
        setsid env "${unset_env[@]}" "${auth_env[@]}" "${backend[@]}" --listen "$addr" --data-dir "$REGISTRY_DATA" \
          >>"$REGISTRY_LOG" 2>&1 </dev/null &
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
      if [ "$(rcurl -s -o /dev/null -w '%{http_code}' --max-time 2 "$REGISTRY_URL/v2/" 2>/dev/null)" = 200 ]; then
        log "$(registry_label) registry ($name) ready at $REGISTRY_URL (pid $REGISTRY_PID, log $REGISTRY_LOG${REGISTRY_USER:+, auth on})"
        export REGISTRY_HOST REGISTRY_URL REGISTRY_PID REGISTRY_LOG REGISTRY_DATA REGISTRY_USER REGISTRY_PASSWORD
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

# rcurl ARGS...: curl with the registry's credentials when it has some.
rcurl() {
  if [ -n "${REGISTRY_USER:-}" ]; then
    curl -u "$REGISTRY_USER:$REGISTRY_PASSWORD" "$@"
  else
    curl "$@"
  fi
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

# ---------------------------------------------------------------------------
# Backing services: a throwaway PostgreSQL cluster and a versitygw S3 server
# ---------------------------------------------------------------------------
# services_start starts both on free loopback ports, under a temp dir, and exports
#   BERTH_TEST_POSTGRES_URL   postgres://postgres@127.0.0.1:PORT/postgres (trust auth; the admin URL)
#   BERTH_TEST_S3_ENDPOINT    http://127.0.0.1:PORT
#   BERTH_TEST_S3_BUCKET      berth-test
#   BERTH_TEST_S3_ACCESS_KEY / BERTH_TEST_S3_SECRET_KEY  (random)
#   BERTH_SERVICES_DATABASE_URL / BERTH_SERVICES_STORAGE_URL  a database ("berth") and a bucket
#                             prefix ("berth/") to run one berth on by hand
# (berth ignores these names: they are not configuration keys). With SERVICES_ENV_FILE set, they
# are also written there as `export` lines. Both servers are stopped and their data removed on
# exit, unless SVC_DETACHED=1 (scripts/services.sh start) leaves them running.
# pg_stop [MODE] / pg_start and s3_stop / s3_start stop and restart one of them on the same port
# (fault tests). The Go-built versitygw is pinned to $VERSITYGW_VERSION.
SVC_DIR="" SVC_PG_DATA="" SVC_PG_PORT="" SVC_S3_PID="" SVC_S3_PORT="" SVC_S3_ROOT="" SVC_DETACHED=0
SVC_BUCKET="${BERTH_TEST_S3_BUCKET_NAME:-berth-test}"

# The newest installed PostgreSQL's bin dir (Debian: /usr/lib/postgresql/VERSION/bin).
pg_bindir() {
  local d
  d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then
    printf '%s\n' "$d"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  else
    return 1
  fi
}

# Installs Debian's postgresql when no initdb is found. Debian creates and starts a "main" cluster
# on 5432 where it can; a fresh install here stops it again (the tests run their own clusters).
ensure_postgres() {
  pg_bindir >/dev/null && return 0
  log "installing postgresql with apt"
  apt_install postgresql
  pg_bindir >/dev/null || die "postgresql was installed but no initdb was found under /usr/lib/postgresql"
  if command -v pg_lsclusters >/dev/null 2>&1; then
    local ver cluster _port status _rest
    while read -r ver cluster _port status _rest; do
      if [ "$status" = online ]; then
        log "stopping the packaged cluster $ver/$cluster (not used by the tests)"
        pg_ctlcluster "$ver" "$cluster" stop 2>/dev/null || true
      fi
    done < <(pg_lsclusters -h 2>/dev/null)
  fi
}

# True when $(go_bin_dir)/versitygw exists and was built from $VERSITYGW_VERSION.
versitygw_current() {
  local bin
  bin="$(go_bin_dir)/versitygw"
  [ -x "$bin" ] && command -v go >/dev/null 2>&1 &&
    go version -m "$bin" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+github\.com/versity/versitygw[[:space:]]+${VERSITYGW_VERSION//./\\.}[[:space:]]"
}

# go install versitygw@$VERSITYGW_VERSION unless it is there already (a cold build takes minutes).
ensure_versitygw() {
  versitygw_current && return 0
  command -v go >/dev/null 2>&1 || die "go not found: Go is needed to build versitygw (the S3 server for tests)"
  local start=$SECONDS
  log "go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION (a cold build takes several minutes)"
  GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0 \
    go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  versitygw_current || die "versitygw $VERSITYGW_VERSION was installed but is not in $(go_bin_dir)"
  log "installed versitygw $VERSITYGW_VERSION in $((SECONDS - start))s"
}

services_install() {
  ensure_postgres
  ensure_versitygw
}

# Runs a PostgreSQL server program as the cluster's owner (postgres refuses to run as root).
_pg_run() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_start() {
  local bin
  bin="$(pg_bindir)" || die "PostgreSQL is not installed"
  _pg_run "$bin/pg_ctl" -D "$SVC_PG_DATA" -l "$SVC_DIR/pg/postgres.log" -w -t 60 start >/dev/null || {
    tail -n 20 "$SVC_DIR/pg/postgres.log" >&2
    return 1
  }
}

# pg_stop [fast|immediate|smart]
pg_stop() {
  local bin
  bin="$(pg_bindir)" || return 0
  if [ -z "$SVC_PG_DATA" ] || [ ! -f "$SVC_PG_DATA/postmaster.pid" ]; then return 0; fi
  _pg_run "$bin/pg_ctl" -D "$SVC_PG_DATA" -m "${1:-fast}" -w -t 60 stop >/dev/null
}

# psql as the superuser against the throwaway server; extra args go to psql.
pg_psql() {
  local bin psql
  if bin="$(pg_bindir)" && [ -x "$bin/psql" ]; then psql="$bin/psql"; else psql=psql; fi
  "$psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "${BERTH_TEST_POSTGRES_URL:?no PostgreSQL: run services_start}" "$@"
}

_svc_start_postgres() {
  local bin attempt
  bin="$(pg_bindir)" || die "PostgreSQL is not installed"
  mkdir -p "$SVC_DIR/pg"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$SVC_DIR/pg"
  SVC_PG_DATA="$SVC_DIR/pg/data"
  _pg_run "$bin/initdb" -D "$SVC_PG_DATA" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$SVC_DIR/pg/initdb.log" 2>&1 || { cat "$SVC_DIR/pg/initdb.log" >&2; return 1; }
  for attempt in 1 2 3; do
    SVC_PG_PORT="$(free_port)"
    # Throwaway data: durability off for speed. Connections: three nodes' pools plus the tests'.
    _pg_run tee "$SVC_PG_DATA/postgresql.auto.conf" >/dev/null <<CONF
port = $SVC_PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SVC_DIR/pg'
max_connections = 400
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
    if pg_start; then
      BERTH_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$SVC_PG_PORT/postgres"
      export BERTH_TEST_POSTGRES_URL
      return 0
    fi
    grep -qiE 'address already in use|could not (create|bind)' "$SVC_DIR/pg/postgres.log" || return 1
    log "postgres port $SVC_PG_PORT was taken; retrying (attempt $attempt)"
  done
  return 1
}

s3_start() {
  local bin deadline
  bin="$(go_bin_dir)/versitygw"
  [ -x "$bin" ] || die "versitygw not found in $(go_bin_dir): run scripts/install-deps.sh"
  if [ "$SVC_DETACHED" = 1 ]; then
    setsid env ROOT_ACCESS_KEY="$BERTH_TEST_S3_ACCESS_KEY" ROOT_SECRET_KEY="$BERTH_TEST_S3_SECRET_KEY" \
      nohup "$bin" --port "127.0.0.1:$SVC_S3_PORT" --quiet posix "$SVC_S3_ROOT" >>"$SVC_DIR/versitygw.log" 2>&1 </dev/null &
  else
    setsid env ROOT_ACCESS_KEY="$BERTH_TEST_S3_ACCESS_KEY" ROOT_SECRET_KEY="$BERTH_TEST_S3_SECRET_KEY" \
      "$bin" --port "127.0.0.1:$SVC_S3_PORT" --quiet posix "$SVC_S3_ROOT" >>"$SVC_DIR/versitygw.log" 2>&1 </dev/null &
  fi
  SVC_S3_PID=$!
  [ "$SVC_DETACHED" = 1 ] || _LIB_PIDS+=("$SVC_S3_PID")
  deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$SVC_S3_PID" 2>/dev/null || { tail -n 20 "$SVC_DIR/versitygw.log" >&2; return 1; }
    # any HTTP answer (403 without credentials) means it is serving
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$SVC_S3_PORT/" 2>/dev/null)" != 000 ] && return 0
    sleep 0.1
  done
  log "versitygw did not answer on 127.0.0.1:$SVC_S3_PORT within 30s"
  return 1
}

s3_stop() {
  [ -n "$SVC_S3_PID" ] || return 0
  _lib_kill_tree "$SVC_S3_PID"
  SVC_S3_PID=""
}

_svc_start_s3() {
  local attempt
  SVC_S3_ROOT="$SVC_DIR/s3"
  mkdir -p "$SVC_S3_ROOT/$SVC_BUCKET"
  BERTH_TEST_S3_BUCKET="$SVC_BUCKET"
  BERTH_TEST_S3_ACCESS_KEY="berth$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  BERTH_TEST_S3_SECRET_KEY="$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')"
  export BERTH_TEST_S3_BUCKET BERTH_TEST_S3_ACCESS_KEY BERTH_TEST_S3_SECRET_KEY
  for attempt in 1 2 3; do
    SVC_S3_PORT="$(free_port)"
    if s3_start; then
      BERTH_TEST_S3_ENDPOINT="http://127.0.0.1:$SVC_S3_PORT"
      export BERTH_TEST_S3_ENDPOINT
      return 0
    fi
    grep -qiE 'address already in use' "$SVC_DIR/versitygw.log" || return 1
    log "versitygw port $SVC_S3_PORT was taken; retrying (attempt $attempt)"
  done
  return 1
}

# services_start (SVC_DETACHED=1: leave them running on exit, for scripts/services.sh start)
services_start() {
  local start=$SECONDS
  services_install
  if [ "$SVC_DETACHED" = 1 ]; then
    SVC_DIR="$(mktemp -d "${TMPDIR:-/tmp}/berth-services.XXXXXX")"
  else
    lib_tmpdir SVC_DIR services
    lib_on_exit services_stop
  fi
  chmod 755 "$SVC_DIR" # the postgres user must reach its data dir inside
  _svc_start_postgres || { log "could not start PostgreSQL (logs in $SVC_DIR/pg)"; return 1; }
  _svc_start_s3 || { log "could not start versitygw (log $SVC_DIR/versitygw.log)"; return 1; }
  pg_psql -c 'CREATE DATABASE berth' || return 1
  BERTH_SERVICES_DATABASE_URL="postgres://postgres@127.0.0.1:$SVC_PG_PORT/berth"
  BERTH_SERVICES_STORAGE_URL="s3://$SVC_BUCKET/berth?endpoint=$BERTH_TEST_S3_ENDPOINT&path_style=true"
  BERTH_SERVICES_DIR="$SVC_DIR"
  export BERTH_SERVICES_DATABASE_URL BERTH_SERVICES_STORAGE_URL BERTH_SERVICES_DIR
  [ -z "${SERVICES_ENV_FILE:-}" ] || services_write_env "$SERVICES_ENV_FILE"
  log "services up in $((SECONDS - start))s: PostgreSQL $BERTH_TEST_POSTGRES_URL, versitygw $BERTH_TEST_S3_ENDPOINT (bucket $SVC_BUCKET) under $SVC_DIR"
}

services_write_env() {
  local file=$1 v
  mkdir -p "$(dirname "$file")"
  {
    echo "# written by scripts/services.sh on $(date -u +%FT%TZ); source it"
    for v in BERTH_TEST_POSTGRES_URL BERTH_TEST_S3_ENDPOINT BERTH_TEST_S3_BUCKET BERTH_TEST_S3_ACCESS_KEY \
      BERTH_TEST_S3_SECRET_KEY BERTH_SERVICES_DATABASE_URL BERTH_SERVICES_STORAGE_URL BERTH_SERVICES_DIR; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf 'export BERTH_SERVICES_PG_DATA=%q BERTH_SERVICES_S3_PID=%q\n' "$SVC_PG_DATA" "$SVC_S3_PID"
    echo "# berth on them:"
    echo "#   AWS_ACCESS_KEY_ID=\$BERTH_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=\$BERTH_TEST_S3_SECRET_KEY \\"
    echo "#   target/debug/berth serve --listen 127.0.0.1:5000 --data-dir /tmp/berth-node \\"
    echo "#     --database-url \"\$BERTH_SERVICES_DATABASE_URL\" --storage \"\$BERTH_SERVICES_STORAGE_URL\""
  } >"$file"
  chmod 600 "$file"
}

services_stop() {
  s3_stop
  pg_stop immediate || true
}

# berth_pg_s3_backend NAME: a fresh database and bucket prefix for one berth run. Sets
# BERTH_BACKEND_DB_URL, BERTH_BACKEND_STORAGE_URL and BERTH_BACKEND_ENV (the S3 keys, as VAR=value).
berth_pg_s3_backend() {
  local name=$1 suffix db
  if [ -z "${BERTH_TEST_POSTGRES_URL:-}" ] || [ -z "${BERTH_TEST_S3_ENDPOINT:-}" ]; then
    die "BERTH_BACKEND=pg-s3 needs BERTH_TEST_POSTGRES_URL and BERTH_TEST_S3_* (scripts/services.sh start; source target/services.env)"
  fi
  suffix="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  name="${name,,}"
  name="${name//[^a-z0-9]/_}"
  db="berth_${name:0:40}_$suffix"
  pg_psql -c "CREATE DATABASE $db" || { log "cannot create database $db on $BERTH_TEST_POSTGRES_URL"; return 1; }
  BERTH_BACKEND_DB_URL="${BERTH_TEST_POSTGRES_URL%/*}/$db"
  BERTH_BACKEND_STORAGE_URL="s3://${BERTH_TEST_S3_BUCKET:-berth-test}/${db//_/-}?endpoint=$BERTH_TEST_S3_ENDPOINT&path_style=true"
  BERTH_BACKEND_ENV=(AWS_ACCESS_KEY_ID="${BERTH_TEST_S3_ACCESS_KEY:-}" AWS_SECRET_ACCESS_KEY="${BERTH_TEST_S3_SECRET_KEY:-}"
    BERTH_SECRETS__KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')")
  log "berth backends: database $BERTH_BACKEND_DB_URL, storage $BERTH_BACKEND_STORAGE_URL"
}

# check_eq WHAT GOT WANT: prints ok, or MISMATCH and fails.
check_eq() {
  if [ "$2" != "$3" ]; then
    echo "MISMATCH $1: got '$2', want '$3'"
    return 1
  fi
  echo "ok: $1 = $2"
}
