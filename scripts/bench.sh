#!/usr/bin/env bash
# berth's benchmark comparison (issue 3): berth against CNCF distribution 2.8.2,
# distribution v3 and zot, plus the machine's own limits, all in one run. Each round also runs
# zot's own benchmark, zb (-c 10 -n $ZB_REQUESTS, built from the same zot release), against berth,
# berth-nofsync and zot (zb cannot push to distribution, see run_registry), each restarted on
# empty data after its suite; `berth-bench summarize` reads
# zb's output ($RUN/<label>.r<round>.zb.txt).
#
#   scripts/bench.sh            full run: installs the peers, 3 A/B rounds, berth at 100k scale
#                               (about 25 min on 2 cores, 7 of them seeding 210k manifests, plus
#                               about 2 min of zb per registry and round), then the GC section
#                               (about 25 min more; --no-gc skips it)
#   scripts/bench.sh --smoke    CI: tiny sizes, 1 round, berth and the baseline only (< 1 min
#                               once built; no zb), a 200-blob GC smoke; fails if any step fails,
#                               never on speed
#   scripts/bench.sh --only gc  only the garbage-collection section (issue 8): `berth-bench gc` against
#                               berth on the embedded default (fs + SQLite) and on PostgreSQL + S3
#                               (versitygw), each on fresh data: 100k blobs on fs (about 12 min), 25k on
#                               PostgreSQL + S3 (about 12 min: seeding through versitygw runs at ~90
#                               blobs/s, so 100k would take 19 min more; BENCH_GC_PG_S3_BLOBS=100000)
#
# Options:
#   --rounds N         A/B rounds (default 3; 1 with --smoke)
#   --profile P        cargo profile to build and run (release; CI may pass dev to reuse its build)
#   --peers "A B"      peers to run: distribution-2.8.2 distribution-3 zot (default: all three);
#                      zb runs whenever zot (and so zb) could be built
#   --no-install       do not install or build missing peers (skip them instead)
#   --no-build         use BERTH_BIN / BENCH_BIN as they are
#   --no-scale         skip seeding berth with 100k tags and repositories (saves about 7 min)
#   --no-gc            skip the garbage-collection section
#   --only gc          run only the garbage-collection section
#   --out DIR          where results go (default target/bench)
#
# Environment:
#   BERTH_BIN, BENCH_BIN       binaries (default ${CARGO_TARGET_DIR:-target}/<profile>/{berth,berth-bench})
#   BENCH_TMP                  scratch parent dir, on the disk under test (default /var/tmp)
#   BERTH_NOFSYNC_ENV          environment that turns berth's fsync off (default
#                              "BERTH_STORAGE__FSYNC=false"; empty: skip): berth runs a second time
#                              as "berth-nofsync" (pushes only), for the fsync-off target
#   DIST3_VERSION, ZOT_VERSION pinned peer versions (below); Go builds are cached under
#                              ~/.cache/berth-tools/bench (delete a directory there to rebuild)
#   ZB_REQUESTS                zb's requests per test (default 40; at least 10, rounded down to a
#                              multiple of 10 by zb, which runs 10 clients).
#                              zb writes 1 MB, 10 MB and 100 MB test blobs under the scratch dir
#   BENCH_SIZE BENCH_CHUNK BENCH_DURATION BENCH_TAGS BENCH_LIST_TAGS BENCH_SCALE_TAGS BENCH_SCALE_REPOS
#                              override the sizes (see "Sizes" below)
#   BENCH_GC_BACKENDS          backends of the GC section: "fs pg-s3" (default; "fs" with --smoke).
#                              pg-s3 uses BERTH_TEST_POSTGRES_URL / BERTH_TEST_S3_* when set (source
#                              target/services.env), else starts its own with scripts/services.sh
#   BENCH_GC_BLOBS BENCH_GC_BLOB_SIZE BENCH_GC_LAYERS BENCH_GC_PUSH_IMAGES BENCH_GC_CHURN_IMAGES BENCH_GC_ROUNDS
#                              override the GC section's sizes (see "Sizes"); BENCH_GC_PG_S3_BLOBS the
#                              blob count on PostgreSQL + S3 (default 25000; BENCH_GC_BLOBS with --smoke)
#   KEEP_TMP=1                 keep the scratch directory
#
# Everything listens on 127.0.0.1 only, and every process started here is killed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools/bench"

# Pinned peers. distribution v3 resolves through the Go module proxy. zot's own module paths
# (zotregistry.io/zot, zotregistry.dev/zot/v2) are refused by a restricted proxy, but
# github.com/project-zot/zot@v1.4.3 is served: its go.mod still says zotregistry.io/zot, so
# `go install` rejects it, and zot and zb are built from a copy of the downloaded module instead
# (zot_build). Newer releases declare a /v2 module path that the github.com path cannot serve.
# Without a build, zot and zb are skipped and the summary says so.
DIST3_VERSION="${DIST3_VERSION:-v3.1.2}"
ZOT_VERSION="${ZOT_VERSION:-v1.4.3}"
ZOT_MODULE="${ZOT_MODULE:-github.com/project-zot/zot}"
ZB_REQUESTS="${ZB_REQUESTS:-40}"

SMOKE=0 ROUNDS="" PROFILE=release INSTALL=1 BUILD=1 SCALE_PHASE=1 GC_PHASE=1 ONLY="" OUT="$ROOT/target/bench"
PEERS="distribution-2.8.2 distribution-3 zot"
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --profile) PROFILE=$2; shift ;;
    --peers) PEERS=$2; shift ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --no-scale) SCALE_PHASE=0 ;;
    --no-gc) GC_PHASE=0 ;;
    --only) ONLY=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

case "$ONLY" in
  "") ;;
  gc) GC_PHASE=1 SCALE_PHASE=0 PEERS="" BERTH_NOFSYNC_ENV="" ;;
  *) echo "bench.sh: --only takes gc" >&2; exit 2 ;;
esac

# ---- sizes ---------------------------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
  ROUNDS=${ROUNDS:-1} PEERS=""
  SIZE=${BENCH_SIZE:-8MiB} CHUNK=${BENCH_CHUNK:-2MiB} DURATION=${BENCH_DURATION:-300ms} WARMUP=100ms
  TAGS=${BENCH_TAGS:-100} SAMPLES=3 SCALE_TAGS=${BENCH_SCALE_TAGS:-300} SCALE_REPOS=${BENCH_SCALE_REPOS:-100}
  LIST_TAGS=${BENCH_LIST_TAGS:-200}
  LOAD=(--pushes 4 --push-size 4MiB --pulls 8 --pull-size 4MiB)
  MACHINE=(--size 64MiB --loopback-size 256MiB) READY_RUNS=1
  GC_BACKENDS=${BENCH_GC_BACKENDS:-fs}
  GC_BLOBS=${BENCH_GC_BLOBS:-200} GC_PG_S3_BLOBS=${BENCH_GC_PG_S3_BLOBS:-${BENCH_GC_BLOBS:-200}}
  GC=(--blob-size "${BENCH_GC_BLOB_SIZE:-4KiB}" --layers "${BENCH_GC_LAYERS:-4}"
    --repos 4 --concurrency 8 --push-images "${BENCH_GC_PUSH_IMAGES:-40}" --churn-images "${BENCH_GC_CHURN_IMAGES:-40}"
    --rounds "${BENCH_GC_ROUNDS:-1}" --busy-grace 1s --timeout 2m)
else
  ROUNDS=${ROUNDS:-3}
  SIZE=${BENCH_SIZE:-1GiB} CHUNK=${BENCH_CHUNK:-16MiB} DURATION=${BENCH_DURATION:-3s} WARMUP=500ms
  TAGS=${BENCH_TAGS:-3000} SAMPLES=20 SCALE_TAGS=${BENCH_SCALE_TAGS:-100000} SCALE_REPOS=${BENCH_SCALE_REPOS:-100000}
  LIST_TAGS=${BENCH_LIST_TAGS:-10000}
  LOAD=(--pushes 32 --push-size 64MiB --pulls 64 --pull-size 64MiB)
  MACHINE=(--size 1GiB --loopback-size 4GiB) READY_RUNS=3
  # 100k blobs of 16 KiB (80k layers, 20k configs): 1.3 GB, a few minutes to seed per backend.
  GC_BACKENDS=${BENCH_GC_BACKENDS:-fs pg-s3}
  GC_BLOBS=${BENCH_GC_BLOBS:-100000} GC_PG_S3_BLOBS=${BENCH_GC_PG_S3_BLOBS:-25000}
  GC=(--blob-size "${BENCH_GC_BLOB_SIZE:-16KiB}" --layers "${BENCH_GC_LAYERS:-4}"
    --repos 100 --concurrency 32 --push-images "${BENCH_GC_PUSH_IMAGES:-500}"
    --churn-images "${BENCH_GC_CHURN_IMAGES:-1000}" --rounds "${BENCH_GC_ROUNDS:-2}" --busy-grace 5s)
fi
CONCURRENCY=${BENCH_CONCURRENCY:-1,64}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- cleanup: every server started here is a process-group leader (setsid) ----------------
PIDS=()
WORK="" SERVICES_ENV=""
cleanup() {
  local rc=$? pid
  set +e
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ -n "$SERVICES_ENV" ]; then "$ROOT/scripts/services.sh" stop "$SERVICES_ENV" >/dev/null 2>&1; fi
  if [ -n "$WORK" ] && [ "${KEEP_TMP:-0}" != 1 ]; then rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# ---- build ---------------------------------------------------------------------------------
case "$PROFILE" in dev|debug) PROFILE_DIR=debug PROFILE=dev ;; *) PROFILE_DIR=$PROFILE ;; esac
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BERTH_BIN="${BERTH_BIN:-$TARGET_DIR/$PROFILE_DIR/berth}"
BENCH_BIN="${BENCH_BIN:-$TARGET_DIR/$PROFILE_DIR/berth-bench}"
if [ "$BUILD" = 1 ]; then
  log "building berth and berth-bench ($PROFILE)"
  (cd "$ROOT" && cargo build --profile "$PROFILE" -p berth -p berth-bench)
fi
[ -x "$BERTH_BIN" ] || die "no berth binary at $BERTH_BIN"
[ -x "$BENCH_BIN" ] || die "no berth-bench binary at $BENCH_BIN"

# ---- peers ---------------------------------------------------------------------------------
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" </dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" </dev/null; }
}

go_install() { # go_install NAME PACKAGE@VERSION [BUILD FLAGS...]: binary at $TOOLS/NAME/<basename>
  local name=$1 pkg=$2; shift 2
  local dir="$TOOLS/$name"
  mkdir -p "$dir"
  if [ -z "$(ls -A "$dir")" ]; then
    command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && PATH="$PATH:/usr/local/go/bin"; }
    command -v go >/dev/null || { log "go is not installed: cannot build $name"; return 1; }
    log "go install $pkg $*"
    GOBIN="$dir" GOFLAGS=-buildvcs=false timeout 1200 go install "$@" "$pkg" >"$dir.log" 2>&1 \
      || { log "go install $pkg failed: $(tail -n 2 "$dir.log" | tr '\n' ' ')"; return 1; }
  fi
  find "$dir" -maxdepth 1 -type f -perm -u+x | head -n 1
}

# zot_build: builds zot (minimal: no extension tags, the plain distribution-spec registry) and
# zb from a writable copy of $ZOT_MODULE@$ZOT_VERSION as `go mod download` puts it in the module
# cache, into $TOOLS/zot-$ZOT_VERSION/{zot,zb} (kept for the next run; log in .../zot-$ZOT_VERSION.log).
# Prints that directory.
zot_build() {
  local dir="$TOOLS/zot-$ZOT_VERSION"
  if [ ! -x "$dir/zot" ] || [ ! -x "$dir/zb" ]; then
    command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && PATH="$PATH:/usr/local/go/bin"; }
    command -v go >/dev/null || { log "go is not installed: cannot build zot"; return 1; }
    log "building zot and zb from $ZOT_MODULE@$ZOT_VERSION"
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    # A subshell in a condition runs without errexit: every step checks its own status.
    if ! (
      src="$(mktemp -d "${TMPDIR:-/tmp}/zot-src.XXXXXX")" || exit 1
      trap 'chmod -R u+w "$src"; rm -rf "$src"' EXIT
      cd "$src" || exit 1
      export GOFLAGS="-mod=mod -buildvcs=false"
      info="$(timeout 600 go mod download -json "$ZOT_MODULE@$ZOT_VERSION")" || { echo "$info"; exit 1; }
      echo "$info"
      mod="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")"
      commit="$(sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]*\)",\{0,1\}$/\1/p' <<<"$info" | head -n 1)"
      [ -n "$mod" ] && [ -d "$mod" ] || { echo "no module directory in go mod download's answer"; exit 1; }
      cp -r "$mod" "$src/zot" && chmod -R u+w "$src/zot" && cd "$src/zot" || exit 1
      config=zotregistry.io/zot/pkg/api/config
      ldflags="-X $config.ReleaseTag=$ZOT_VERSION -X $config.Commit=${commit:-unknown} -X $config.BinaryType=minimal"
      ldflags+=" -X $config.GoVersion=$(go env GOVERSION)"
      for cmd in zot zb; do
        timeout 1200 go build -tags containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper \
          -ldflags "$ldflags" -o "$dir.tmp/$cmd" "./cmd/$cmd" || exit 1
      done
    ) >"$dir.log" 2>&1; then
      log "building zot $ZOT_VERSION failed: $(tail -n 2 "$dir.log" | tr '\n' ' ')"
      rm -rf "$dir.tmp"
      return 1
    fi
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

DIST2_BIN="" DIST3_BIN="" ZOT_BIN="" ZB_BIN="" ZOT_DIR=""
REGISTRIES=(berth)
BERTH_NOFSYNC_ENV="${BERTH_NOFSYNC_ENV-BERTH_STORAGE__FSYNC=false}"
if [ -n "$BERTH_NOFSYNC_ENV" ] && [ "$SMOKE" = 0 ]; then REGISTRIES+=(berth-nofsync); fi
for peer in $PEERS; do
  case "$peer" in
    distribution-2.8.2)
      if ! command -v docker-registry >/dev/null && [ "$INSTALL" = 1 ]; then
        log "installing docker-registry (distribution 2.8.2) with apt"
        apt_install docker-registry
        # Debian starts a service on :5000 where an init system runs; only the binary is wanted.
        if command -v systemctl >/dev/null; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
      fi
      DIST2_BIN="$(command -v docker-registry || true)"
      if [ -n "$DIST2_BIN" ]; then REGISTRIES+=(distribution-2.8.2); else log "skipping distribution 2.8.2 (not installed)"; fi
      ;;
    distribution-3)
      if [ "$INSTALL" = 1 ] || [ -n "$(ls -A "$TOOLS/distribution-$DIST3_VERSION" 2>/dev/null)" ]; then
        DIST3_BIN="$(go_install "distribution-$DIST3_VERSION" \
          "github.com/distribution/distribution/v3/cmd/registry@$DIST3_VERSION" || true)"
      fi
      if [ -n "$DIST3_BIN" ]; then REGISTRIES+=("distribution-${DIST3_VERSION#v}"); else log "skipping distribution v3"; fi
      ;;
    zot)
      if [ "$INSTALL" = 1 ] || { [ -x "$TOOLS/zot-$ZOT_VERSION/zot" ] && [ -x "$TOOLS/zot-$ZOT_VERSION/zb" ]; }; then
        ZOT_DIR="$(zot_build || true)"
      fi
      if [ -n "$ZOT_DIR" ]; then
        ZOT_BIN="$ZOT_DIR/zot" ZB_BIN="$ZOT_DIR/zb"
        REGISTRIES+=("zot-${ZOT_VERSION#v}")
      else
        log "skipping zot and zb (could not be built)"
      fi
      ;;
    *) die "unknown peer $peer" ;;
  esac
done

# ---- scratch space and results -------------------------------------------------------------
WORK="$(mktemp -d "${BENCH_TMP:-/var/tmp}/berth-bench.XXXXXX")"
RUN_ID="$(date +%Y%m%d-%H%M%S)"
RUN="$OUT/runs/$RUN_ID"
mkdir -p "$RUN"

describe_machine() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "cpu flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -e sha_ni -e avx2 -e avx512f | sort -u | tr '\n' ' ')"
  echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
  echo "disk: $(df -h "$WORK" | awk 'NR==2 {print $1 " " $2 " (" $5 " used)"}'), fs $(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || stat -f -c %T "$WORK")"
  echo "kernel: $(uname -r)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rustc: $(rustc --version 2>/dev/null || echo -)"
  echo "go: $(go version 2>/dev/null || echo -)"
  echo "openssl: $(openssl version 2>/dev/null || echo -)"
  echo "berth: $("$BERTH_BIN" --version 2>/dev/null || echo -) ($BERTH_BIN)"
  [ -n "$DIST2_BIN" ] && echo "distribution-2.8.2: $("$DIST2_BIN" --version 2>&1 | head -n1)"
  [ -n "$DIST3_BIN" ] && echo "distribution-v3: $("$DIST3_BIN" --version 2>&1 | head -n1) (go install ...@$DIST3_VERSION)"
  [ -n "$ZOT_BIN" ] && echo "zot-${ZOT_VERSION#v}: $ZOT_MODULE@$ZOT_VERSION, minimal build; $("$ZOT_BIN" --version 2>&1 | head -n1)"
  [ -n "$ZB_BIN" ] && [ "$SMOKE" = 0 ] && echo "zb: $ZOT_MODULE/cmd/zb@$ZOT_VERSION, -c 10 -n $ZB_REQUESTS against every registry but berth-nofsync"
  echo "registries: ${REGISTRIES[*]}"
  if [ "$ONLY" != gc ]; then echo "rounds: $ROUNDS; blob $SIZE, chunk $CHUNK, rate ${DURATION} at $CONCURRENCY connections, $TAGS tags"; fi
  if [ "$GC_PHASE" = 1 ]; then echo "gc: backends $GC_BACKENDS; --blobs $GC_BLOBS (pg-s3: $GC_PG_S3_BLOBS) ${GC[*]}"; fi
}
describe_machine | tee "$RUN/machine.txt" >&2

# ---- servers -------------------------------------------------------------------------------
SERVER_PID="" SERVER_URL="" SERVER_ENV=() PG_S3_ENV=() PG_S3_DB_URL="" PG_S3_STORAGE_URL=""

write_distribution_config() { # FILE ADDR DATA
  cat >"$1" <<EOF
version: 0.1
log:
  level: info
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $3
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $2
EOF
}

# zot v1.4.3 with its defaults otherwise: dedupe stays on (with it off, zb's repeated pushes of
# the same blobs to new repositories store a copy each: -n 20 wrote 10 GB) and so does its GC.
write_zot_config() { # FILE PORT DATA
  cat >"$1" <<EOF
{"distSpecVersion": "1.0.1", "storage": {"rootDirectory": "$3"},
 "http": {"address": "127.0.0.1", "port": "$2"}, "log": {"level": "info"}}
EOF
}

# start_server LABEL DATA_DIR READY_JSON [READY_NAME]: starts it, waits for GET /v2/ (timing it).
start_server() {
  local label=$1 data=$2 ready_json=$3 name=${4:-ready} port addr since dir
  dir="$(dirname "$data")"
  mkdir -p "$data"
  port="$("$BENCH_BIN" free-port)"
  addr="127.0.0.1:$port"
  local -a cmd env_cmd=(env)
  for v in $(compgen -e); do case "$v" in REGISTRY_*) env_cmd+=(-u "$v") ;; esac; done
  case "$label" in
    # The peers run without authentication, so berth does too (auth.mode = none): like for like.
    berth) cmd=(env BERTH_AUTH__MODE=none "${SERVER_ENV[@]}" "$BERTH_BIN" serve --listen "$addr" --data-dir "$data") ;;
    berth-pg-s3) cmd=(env BERTH_AUTH__MODE=none "${SERVER_ENV[@]}" "${PG_S3_ENV[@]}" "$BERTH_BIN" serve --listen "$addr"
      --data-dir "$data" --database-url "$PG_S3_DB_URL" --storage "$PG_S3_STORAGE_URL") ;;
    berth-nofsync) read -r -a cmd <<<"env BERTH_AUTH__MODE=none $BERTH_NOFSYNC_ENV"; cmd+=("$BERTH_BIN" serve --listen "$addr" --data-dir "$data") ;;
    distribution-2.*) write_distribution_config "$dir/config.yml" "$addr" "$data"; cmd=("${env_cmd[@]}" "$DIST2_BIN" serve "$dir/config.yml") ;;
    distribution-3.*) write_distribution_config "$dir/config.yml" "$addr" "$data"; cmd=("${env_cmd[@]}" "$DIST3_BIN" serve "$dir/config.yml") ;;
    zot-*) write_zot_config "$dir/zot.json" "$port" "$data"; cmd=("$ZOT_BIN" serve "$dir/zot.json") ;;
    *) die "unknown registry $label" ;;
  esac
  since=${EPOCHREALTIME/./}
  setsid "${cmd[@]}" >>"$dir/server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_URL="http://$addr"
  if ! "$BENCH_BIN" wait-ready --url "$SERVER_URL" --pid "$SERVER_PID" --since-us "$since" --name "$name" \
      --label "$label" --round "$ROUND" --json "$ready_json" >/dev/null; then
    tail -n 30 "$dir/server.log" >&2
    die "$label did not start"
  fi
}

stop_server() {
  [ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
  SERVER_PID=""
}

suite_skip() {
  case "$1" in berth-nofsync) echo "pull,manifest,head,tags,catalog,load" ;; *) echo "" ;; esac
}

run_registry() { # LABEL ROUND
  local label=$1 base="$WORK/$1-r$2" skip
  log "round $2: $label (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  start_server "$label" "$base/data" "$RUN/$label.r$2.ready.json"
  skip="$(suite_skip "$label")"
  "$BENCH_BIN" suite --url "$SERVER_URL" --pid "$SERVER_PID" --label "$label" --round "$2" \
    --size "$SIZE" --chunk "$CHUNK" --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
    --tags "$TAGS" --list-samples "$SAMPLES" "${LOAD[@]}" ${skip:+--skip "$skip"} \
    --json "$RUN/$label.r$2.suite.json" >"$RUN/$label.r$2.suite.txt"
  stop_server
  rm -rf "$base"
  sync
  # zb on a fresh start with empty data, its test blobs under $base/zb. zb exits 1 when any
  # request failed; its output keeps every test's figures either way. It runs against
  # berth-nofsync too: zot never fsyncs, so that column shows what durability costs zb's pushes.
  # Not against distribution: zb 1.4.3 keeps only the path of an upload's Location (dropping
  # distribution's `_state` query parameter), distribution answers 404 BLOB_UPLOAD_UNKNOWN, and
  # zb then waits forever for the failed request's record.
  if [ -n "$ZB_BIN" ] && [ "$SMOKE" = 0 ] && [[ "$label" != distribution-* ]]; then
    start_server "$label" "$base/data" "$base/zb-ready.json"
    log "round $2: zb -c 10 -n $ZB_REQUESTS against $label"
    timeout 1800 "$ZB_BIN" -c 10 -n "$ZB_REQUESTS" -d "$base/zb" -o stdout "$SERVER_URL" \
      >"$RUN/$label.r$2.zb.txt" 2>&1 </dev/null || log "zb against $label failed (see $RUN/$label.r$2.zb.txt)"
    stop_server
    rm -rf "$base"
    sync
  fi
}

# ---- the run -------------------------------------------------------------------------------
STARTED=$SECONDS
[ "$ONLY" = gc ] && ROUNDS=0
for ROUND in $(seq 1 "$ROUNDS"); do
  log "round $ROUND: machine limits"
  "$BENCH_BIN" machine --dir "$WORK/machine" "${MACHINE[@]}" --label machine --round "$ROUND" \
    --json "$RUN/machine.r$ROUND.json" >/dev/null
  log "round $ROUND: baseline hyper server"
  port="$("$BENCH_BIN" free-port)"
  setsid "$BENCH_BIN" baseline-server --listen "127.0.0.1:$port" >"$WORK/baseline.log" 2>&1 </dev/null &
  BASELINE_PID=$!
  PIDS+=("$BASELINE_PID")
  "$BENCH_BIN" wait-ready --url "http://127.0.0.1:$port" --settle 0s >/dev/null
  "$BENCH_BIN" rate --url "http://127.0.0.1:$port" --path /v2/bench/manifest/manifests/latest --name baseline \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
    --label baseline --round "$ROUND" --json "$RUN/baseline.r$ROUND.json" >/dev/null
  # The same server's upload sink hashes and drops what it receives: the pushes' ceiling
  # over HTTP, and what a request per chunk costs when each answer waits for the hash.
  "$BENCH_BIN" push --url "http://127.0.0.1:$port" --size "$SIZE" --repeat 3 \
    --label baseline --round "$ROUND" --json "$RUN/baseline.push.r$ROUND.json" >/dev/null
  "$BENCH_BIN" push --url "http://127.0.0.1:$port" --size "$SIZE" --chunk "$CHUNK" --repeat 3 \
    --label baseline --round "$ROUND" --json "$RUN/baseline.chunked.r$ROUND.json" >/dev/null
  stop_pid "$BASELINE_PID"
  # A/B/A/B: odd rounds start with berth, even rounds with the last peer.
  order=("${REGISTRIES[@]}")
  if [ $((ROUND % 2)) = 0 ]; then
    order=(); for ((i = ${#REGISTRIES[@]} - 1; i >= 0; i--)); do order+=("${REGISTRIES[$i]}"); done
  fi
  for label in "${order[@]}"; do run_registry "$label" "$ROUND"; done
done

# berth at scale: seed once (with fsync off when available: the data written is the same),
# then restart with the defaults, time the listings, and time restarts on the seeded data dir.
if [ "$SCALE_PHASE" = 1 ]; then
  log "berth at scale: $SCALE_TAGS + $LIST_TAGS tags, $SCALE_REPOS repositories"
  ROUND=1
  SCALE=(--tags "$SCALE_TAGS" --list-tags "$LIST_TAGS" --repos "$SCALE_REPOS")
  seeder=berth
  if [ -n "$BERTH_NOFSYNC_ENV" ]; then seeder=berth-nofsync; fi
  start_server "$seeder" "$WORK/scale/data" "$WORK/scale-seed.ready.json" ready_seed
  "$BENCH_BIN" scale "${SCALE[@]}" --phase seed --url "$SERVER_URL" --label "$seeder" --round 1 \
    --json "$RUN/$seeder.scale-seed.json" >"$RUN/$seeder.scale-seed.txt"
  stop_server
  for ROUND in $(seq 1 "$READY_RUNS"); do
    start_server berth "$WORK/scale/data" "$RUN/berth.r$ROUND.ready_seeded.json" ready_seeded
    if [ "$ROUND" = 1 ]; then
      "$BENCH_BIN" scale "${SCALE[@]}" --phase measure --url "$SERVER_URL" --pid "$SERVER_PID" --label berth \
        --round 1 --json "$RUN/berth.scale.json" >"$RUN/berth.scale.txt"
    fi
    stop_server
  done
fi

# ---- garbage collection (issue 8) ----------------------------------------------------------
# berth-bench gc on a fresh berth per backend: seed and untag N blobs (fsync off), restart with
# the defaults, reclaim them in one run, then pushes with and without a busy collector (A/B).
# Scheduled collection is off so that only the benchmark's runs collect.

# pg_s3_fresh: a fresh database and bucket prefix on the services of BERTH_TEST_* (started here
# with scripts/services.sh unless the caller's environment names them).
pg_s3_fresh() {
  if [ -z "${BERTH_TEST_POSTGRES_URL:-}" ] || [ -z "${BERTH_TEST_S3_ENDPOINT:-}" ]; then
    SERVICES_ENV="$WORK/services.env"
    log "starting PostgreSQL and versitygw (scripts/services.sh)"
    "$ROOT/scripts/services.sh" start "$SERVICES_ENV" >&2 || die "could not start the services"
    # shellcheck source=/dev/null
    . "$SERVICES_ENV"
  fi
  local psql db suffix
  psql="$(find /usr/lib/postgresql -path '*/bin/psql' 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$psql" ] || psql=psql
  suffix="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  db="berth_gc_$suffix"
  "$psql" -X -q -v ON_ERROR_STOP=1 -d "$BERTH_TEST_POSTGRES_URL" -c "CREATE DATABASE $db" >/dev/null \
    || die "cannot create database $db"
  PG_S3_DB_URL="${BERTH_TEST_POSTGRES_URL%/*}/$db"
  PG_S3_STORAGE_URL="s3://${BERTH_TEST_S3_BUCKET:-berth-test}/berth-gc-$suffix?endpoint=$BERTH_TEST_S3_ENDPOINT&path_style=true"
  PG_S3_ENV=(AWS_ACCESS_KEY_ID="${BERTH_TEST_S3_ACCESS_KEY:-}" AWS_SECRET_ACCESS_KEY="${BERTH_TEST_S3_SECRET_KEY:-}"
    BERTH_SECRETS__KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')")
  log "berth on PostgreSQL $PG_S3_DB_URL and $PG_S3_STORAGE_URL"
}

if [ "$GC_PHASE" = 1 ]; then
  ROUND=1
  for backend in $GC_BACKENDS; do
    case "$backend" in
      fs) label=berth ;;
      pg-s3) label=berth-pg-s3; pg_s3_fresh ;;
      *) die "unknown GC backend $backend (fs, pg-s3)" ;;
    esac
    gc_args=(--blobs "$GC_BLOBS" "${GC[@]}")
    if [ "$backend" = pg-s3 ]; then gc_args[1]=$GC_PG_S3_BLOBS; fi
    log "garbage collection on $label: ${gc_args[*]}"
    gc_started=$SECONDS
    seed=$((RANDOM * 32768 + RANDOM))
    # Seed (push and untag) with fsync off: the data written is the same, only faster. Then
    # measure on a restart with the defaults.
    SERVER_ENV=(BERTH_GC__INTERVAL=off BERTH_STORAGE__FSYNC=false BERTH_DATABASE__FSYNC=false)
    start_server "$label" "$WORK/gc-$backend/data" "$WORK/gc-$backend.ready-seed.json"
    "$BENCH_BIN" gc --phase seed --data-seed "$seed" --url "$SERVER_URL" --label "$label" --round 1 "${gc_args[@]}" \
      --json "$RUN/$label.gc-seed.json" >"$RUN/$label.gc-seed.txt"
    stop_server
    log "seeding $label took $((SECONDS - gc_started)) s"
    SERVER_ENV=(BERTH_GC__INTERVAL=off)
    start_server "$label" "$WORK/gc-$backend/data" "$WORK/gc-$backend.ready.json"
    "$BENCH_BIN" gc --phase measure --data-seed "$seed" --url "$SERVER_URL" --pid "$SERVER_PID" --label "$label" \
      --round 1 "${gc_args[@]}" --json "$RUN/$label.gc.json" >"$RUN/$label.gc.txt"
    stop_server
    log "garbage collection on $label took $((SECONDS - gc_started)) s"
    rm -rf "$WORK/gc-$backend"
  done
  SERVER_ENV=()
fi
log "runs took $((SECONDS - STARTED)) s"

# ---- summary -------------------------------------------------------------------------------
strict=()
[ "$SMOKE" = 1 ] && strict=(--strict)
zb_outputs=()
for f in "$RUN"/*.zb.txt; do [ -e "$f" ] && zb_outputs+=("$f"); done
"$BENCH_BIN" summarize "$RUN"/*.json "${zb_outputs[@]}" --out "$RUN/summary.json" --markdown "$RUN/summary.md" "${strict[@]}"
cp "$RUN/summary.json" "$RUN/summary.md" "$RUN/machine.txt" "$OUT/"
log "results: $RUN (summary also in $OUT/summary.md)"
