#!/usr/bin/env bash
# The pull-through cache (issue 6) with real clients and real upstream registries, all on 127.0.0.1:
#   - upstream: CNCF distribution 2.8.2 (Debian's docker-registry), loaded by skopeo with generated
#     images (multi-arch indexes with linux/amd64 + linux/arm64, small images, one image with a
#     200 MiB random layer);
#   - berth with [[proxy.upstreams]] pointing at it (namespace "docker.io", mirror mode on), plus
#     a dead and a hanging upstream in front of live ones for priority failover;
#   - distribution 2.8.2 in proxy mode (proxy.remoteurl) against the same upstream, for timing;
#   - containerd (Debian) as a real mirror client through hosts.toml, when it can run here.
# Prints "PASS name" / "FAIL name" per test, a "TIMING ..." line and "N passed, M failed"; exits
# non-zero on any failure. The tests run in order and build on each other (the upstream is killed
# near the end); a FAIL does not stop the ones after it.
#
#   scripts/proxy.sh                 everything
#   scripts/proxy.sh --peers-only    no berth: upstream + images, distribution's proxy timing and
#                                    containerd through distribution's proxy as its mirror (checks
#                                    this script's own machinery)
#
# Env: BERTH_BIN (default target/debug/berth), BIG_LAYER_MIB (200), PROXY_TAG_TTL (3s),
#      CLIENT_TIMEOUT (120 s per client command), PROXY_CONTAINERD=0 (skip containerd),
#      PROXY_INSTALL=0 (never apt-get install docker-registry/containerd), KEEP_TMP=1 (keep dirs).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PEERS_ONLY=0
case "${1:-}" in
  --peers-only) PEERS_ONLY=1 ;;
  "") ;;
  -h|--help) sed -n '2,/^set -euo/{s/^# \{0,1\}//p;}' "$0"; exit 0 ;;
  *) die "unknown argument $1 (--peers-only)" ;;
esac

CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-120}"
BIG_LAYER_MIB="${BIG_LAYER_MIB:-200}"
TAG_TTL="${PROXY_TAG_TTL:-3s}"
TAG_TTL_S="${TAG_TTL%s}"
STARTED=$SECONDS

if [ "${PROXY_INSTALL:-1}" = 1 ]; then ensure_distribution; fi
for tool in docker-registry skopeo crane jq curl python3 sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/install-deps.sh (docker-registry: INSTALL_DISTRIBUTION=1)"
done
if [ "$PEERS_ONLY" = 0 ]; then
  [ -x "$BERTH_BIN" ] || die "berth binary not found at $BERTH_BIN (cargo build -p berth, or set BERTH_BIN)"
fi

lib_tmpdir WORK proxy
IMG="$WORK/images"

# --- client isolation (as in clients.sh): no host credentials or config ------------------------
export DOCKER_CONFIG="$WORK/docker"
export REGISTRY_AUTH_FILE="$WORK/auth.json"
export CONTAINERS_REGISTRIES_CONF="$WORK/registries.conf"
mkdir -p "$DOCKER_CONFIG"
echo '{}' >"$DOCKER_CONFIG/config.json"
echo '{}' >"$REGISTRY_AUTH_FILE"
printf 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n' >"$CONTAINERS_REGISTRIES_CONF"

t() {
  local cmd=$1
  shift
  case "$cmd" in
    skopeo) timeout "$CLIENT_TIMEOUT" skopeo --insecure-policy "$@" ;;
    *) timeout "$CLIENT_TIMEOUT" "$cmd" "$@" ;;
  esac
}

# check_in WHAT GOT ALLOWED...: GOT is one of ALLOWED
check_in() {
  local what=$1 got=$2 a
  shift 2
  for a in "$@"; do
    if [ "$got" = "$a" ]; then echo "ok: $what = $got"; return 0; fi
  done
  echo "MISMATCH $what: got '$got', want one of: $*"
  return 1
}

# --- servers -----------------------------------------------------------------------------------
# start_bg VAR LOG CMD...: start CMD in its own process group (killed on exit); VAR=its pid.
start_bg() {
  local _sb_var=$1 _sb_log=$2 _sb_pid
  shift 2
  local -a clean=(env)
  local v
  # distribution reads every REGISTRY_* variable as configuration; berth gets no client settings
  for v in $(compgen -e); do
    case "$v" in REGISTRY_*|DOCKER_CONFIG|CONTAINERS_*) clean+=(-u "$v") ;; esac
  done
  setsid "${clean[@]}" "$@" >>"$_sb_log" 2>&1 </dev/null &
  _sb_pid=$!
  _LIB_PIDS+=("$_sb_pid")
  printf -v "$_sb_var" '%s' "$_sb_pid"
}

# wait_v2 NAME URL PID LOG: until GET URL/v2/ answers 200 (30 s).
wait_v2() {
  local name=$1 url=$2 pid=$3 logf=$4 deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || { log "$name exited during startup"; tail -n 30 "$logf" >&2; return 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/v2/" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  log "$name did not answer GET $url/v2/ within 30s"
  tail -n 30 "$logf" >&2
  return 1
}

# start_distribution VAR NAME [REMOTEURL]: distribution 2.8.2 on a free port, fs storage; with
# REMOTEURL in proxy (pull-through) mode. Sets VAR_URL, VAR_HOST, VAR_PID, VAR_DATA, VAR_LOG.
start_distribution() {
  local var=$1 name=$2 remote=${3:-} dir port addr pid attempt
  dir="$WORK/$name"
  mkdir -p "$dir/data"
  for attempt in 1 2 3; do
    port="$(free_port)"
    addr="127.0.0.1:$port"
    _registry_write_distribution_config "$dir/config.yml" "$addr" "$dir/data"
    [ -z "$remote" ] || printf 'proxy:\n  remoteurl: %s\n' "$remote" >>"$dir/config.yml"
    : >"$dir/registry.log"
    start_bg pid "$dir/registry.log" docker-registry serve "$dir/config.yml"
    if wait_v2 "$name" "http://$addr" "$pid" "$dir/registry.log"; then
      printf -v "${var}_URL" '%s' "http://$addr"
      printf -v "${var}_HOST" '%s' "$addr"
      printf -v "${var}_PID" '%s' "$pid"
      printf -v "${var}_DATA" '%s' "$dir/data"
      printf -v "${var}_LOG" '%s' "$dir/registry.log"
      log "distribution ($name${remote:+, proxy of $remote}) ready at http://$addr (pid $pid)"
      return 0
    fi
    _lib_kill_tree "$pid"
    grep -qi 'address already in use' "$dir/registry.log" || return 1
  done
  return 1
}

# A TCP listener that accepts connections and never answers (an upstream that hangs).
start_blackhole() {
  local port
  port="$(free_port)"
  start_bg BLACKHOLE_PID "$WORK/blackhole.log" python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(128)
held = []
while True:
    c, _ = s.accept(); held.append(c)
' "$port"
  BLACKHOLE_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# berth with the proxy configuration; sets BERTH_URL, BERTH_HOST, BERTH_PID, BERTH_LOG, BERTH_CFG.
write_berth_config() { # FILE
  cat >"$1" <<EOF
[proxy]
offline = false
tag_ttl = "$TAG_TTL"
max_size = 0
idle_expiry = "0"

# the stand-in for Docker Hub: docker.io/<repo> resolves to the local distribution
[[proxy.upstreams]]
name = "hub"
url = "$UP_URL"
priority = 1
enabled = true
namespace = "docker.io"
mirror = true
library_prefix = true
timeout = "20s"
max_concurrent = 16

# priority failover: "failover" = a refused port first, then the live upstream
[[proxy.upstreams]]
name = "fo-dead"
url = "$DEAD_URL"
priority = 1
namespace = "failover"
mirror = false
library_prefix = false
timeout = "5s"

[[proxy.upstreams]]
name = "fo-live"
url = "$UP_URL"
priority = 2
namespace = "failover"
mirror = false
library_prefix = false

# "failover-hang" = an upstream that accepts and never answers first (timeout 2s), then the live one
[[proxy.upstreams]]
name = "hang"
url = "$BLACKHOLE_URL"
priority = 1
namespace = "failover-hang"
mirror = false
library_prefix = false
timeout = "2s"

[[proxy.upstreams]]
name = "hang-live"
url = "$UP_URL"
priority = 2
namespace = "failover-hang"
mirror = false
library_prefix = false
EOF
}

# berth_config_check FILE: berth accepts the configuration (fails early on a build without [proxy])
berth_config_check() {
  local out="$WORK/berth-config-check.log"
  mkdir -p "$WORK/berth/data"
  if ! "$BERTH_BIN" config check --config "$1" --data-dir "$WORK/berth/data" >"$out" 2>&1; then
    cat "$out" >&2
    if grep -qi 'unknown field.*proxy\|proxy.*unknown' "$out"; then
      die "this berth build has no [proxy] configuration yet (pull-through cache not built in): $BERTH_BIN"
    fi
    die "berth rejects the proxy configuration $1"
  fi
}

start_berth() {
  local dir="$WORK/berth" port addr attempt
  mkdir -p "$dir/data"
  BERTH_CFG="$dir/berth.toml"
  BERTH_LOG="$dir/berth.log"
  write_berth_config "$BERTH_CFG"
  berth_config_check "$BERTH_CFG"
  for attempt in 1 2 3; do
    port="$(free_port)"
    addr="127.0.0.1:$port"
    : >"$BERTH_LOG"
    start_bg BERTH_PID "$BERTH_LOG" env BERTH_AUTH__MODE=none BERTH_RATE_LIMIT__ENABLED=false \
      "$BERTH_BIN" serve --config "$BERTH_CFG" --listen "$addr" --data-dir "$dir/data"
    if wait_v2 berth "http://$addr" "$BERTH_PID" "$BERTH_LOG"; then
      BERTH_URL="http://$addr"
      BERTH_HOST="$addr"
      log "berth ready at $BERTH_URL (pid $BERTH_PID, config $BERTH_CFG, log $BERTH_LOG)"
      return 0
    fi
    _lib_kill_tree "$BERTH_PID"
    grep -qiE 'address (already )?in use' "$BERTH_LOG" || return 1
  done
  return 1
}

# --- images ------------------------------------------------------------------------------------
# Distinct content for every cold pull, so a "cold" pull never finds blobs cached by another test:
# each seed gives its own small and multiarch images (make-test-images.py seeds the small content).
want() { jq -r "$2" "$IMG/$1/digests.json"; }

make_images() {
  local s
  log "generating images (big layer ${BIG_LAYER_MIB} MiB)"
  python3 "$ROOT/scripts/make-test-images.py" "$IMG/main" --big-mib "$BIG_LAYER_MIB" --seed "proxy-main-$$" >/dev/null
  for s in sk-ns cr-ns sk-mir cr-mir uncached ctr localwins; do
    python3 "$ROOT/scripts/make-test-images.py" "$IMG/$s" --big-mib 1 --seed "proxy-$s-$$" >/dev/null
  done
}

# push LAYOUT DEST (DEST = host/repo:tag), all manifests of an index, digests preserved
push_layout() {
  t skopeo copy --all --preserve-digests --dest-tls-verify=false -q "oci:$1" "docker://$2"
}

load_upstream() {
  local s
  log "loading the upstream $UP_HOST"
  push_layout "$IMG/main/big" "$UP_HOST/proxytest/big:v1"
  push_layout "$IMG/main/small" "$UP_HOST/library/libtest:v1"
  for s in sk-ns cr-ns sk-mir cr-mir; do
    push_layout "$IMG/$s/multiarch" "$UP_HOST/proxytest/$s:v1"
  done
  push_layout "$IMG/uncached/small" "$UP_HOST/proxytest/uncached:v1"
  push_layout "$IMG/ctr/multiarch" "$UP_HOST/library/ctrtest:v1"
  # the upstream's version of a name that berth also holds locally
  push_layout "$IMG/main/small" "$UP_HOST/proxytest/localwins:v1"
  check_eq "upstream multi-arch index" "$(t crane digest --insecure "$UP_HOST/proxytest/sk-ns:v1")" "$(want sk-ns .multiarch.index)" >&2
  check_eq "upstream big image" "$(t crane digest --insecure "$UP_HOST/proxytest/big:v1")" "$(want main .big.manifest)" >&2
}

# --- helpers against berth ---------------------------------------------------------------------
ACCEPT='application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'

# hdr FILE NAME: a response header's value from a curl -D dump (last response)
hdr() { tr -d '\r' <"$1" | awk -v n="$2" -F': ' 'tolower($1)==tolower(n){v=$2} END{print v}'; }

# fetch METHOD PATH: curl to berth; prints the status; headers in $T/h, body in $T/b
fetch() {
  local m=(-X "$1")
  [ "$1" = HEAD ] && m=(--head)
  curl -s -o "$T/b" -D "$T/h" -w '%{http_code}' --max-time 60 "${m[@]}" -H "Accept: $ACCEPT" "$BERTH_URL$2"
}

cache_header() { # METHOD PATH -> "STATUS X-Berth-Cache"
  local code
  code="$(fetch "$1" "$2")"
  echo "$code $(hdr "$T/h" X-Berth-Cache)"
}

layout_digest() { jq -r '.manifests[0].digest' "$1/index.json"; }

# cold + warm pull of one multi-arch image with skopeo copy --all / crane pull, digests checked
pull_skopeo() { # REF DIR
  t skopeo copy --all --preserve-digests --src-tls-verify=false -q "docker://$1" "oci:$2:v1"
}
pull_crane() { # REF DIR (the whole index: crane pull without --platform keeps it)
  t crane pull --insecure --format oci "$1" "$2"
}
check_platforms() { # REF SEED
  local p
  for p in linux/amd64 linux/arm64; do
    check_eq "$p child digest" "$(t crane digest --insecure --platform "$p" "$1")" "$(want "$2" ".multiarch.platforms[\"$p\"].manifest")"
  done
}

# pull_case CLIENT SEED REPO_PATH (path under berth, e.g. docker.io/proxytest/sk-ns)
pull_case() {
  local client=$1 seed=$2 path=$3 d got
  d="$(want "$seed" .multiarch.index)"
  check_eq "upstream index digest" "$(t crane digest --insecure "$UP_HOST/proxytest/$seed:v1")" "$d"
  "pull_$client" "$BERTH_HOST/$path:v1" "$T/cold"
  check_eq "cold $client pull: index digest" "$(layout_digest "$T/cold")" "$d"
  t crane validate --insecure --remote "$BERTH_HOST/$path:v1" >/dev/null
  check_platforms "$BERTH_HOST/$path:v1" "$seed"
  "pull_$client" "$BERTH_HOST/$path:v1" "$T/warm"
  check_eq "warm $client pull: index digest" "$(layout_digest "$T/warm")" "$d"
  # the cached copy answers by digest without the upstream, and its blobs are hits
  got="$(cache_header GET "/v2/$path/manifests/$d")"
  check_eq "GET index by digest (status, X-Berth-Cache)" "$got" "200 HIT"
  check_eq "served index sha256" "sha256:$(sha256sum <"$T/b" | cut -d' ' -f1)" "$d"
  got="$(cache_header GET "/v2/$path/manifests/v1")"
  check_in "GET index by tag (status, X-Berth-Cache)" "$got" "200 HIT" "200 REVALIDATED"
  local cfg
  cfg="$(want "$seed" '.multiarch.platforms["linux/arm64"].config')"
  got="$(cache_header GET "/v2/$path/blobs/$cfg")"
  check_eq "GET arm64 config blob (status, X-Berth-Cache)" "$got" "200 HIT"
  check_eq "config blob sha256" "sha256:$(sha256sum <"$T/b" | cut -d' ' -f1)" "$cfg"
}

# --- tests -------------------------------------------------------------------------------------
test_skopeo_namespaced() { pull_case skopeo sk-ns docker.io/proxytest/sk-ns; }
test_crane_namespaced() { pull_case crane cr-ns docker.io/proxytest/cr-ns; }

test_skopeo_mirror() {
  pull_case skopeo sk-mir proxytest/sk-mir
  # cached under the upstream's namespace
  check_eq "same image at docker.io/proxytest/sk-mir (status, X-Berth-Cache)" \
    "$(cache_header HEAD "/v2/docker.io/proxytest/sk-mir/manifests/$(want sk-mir .multiarch.index)")" "200 HIT"
  curl -sf --max-time 30 "$BERTH_URL/v2/_catalog" >"$T/catalog.json"
  check_eq "docker.io/proxytest/sk-mir in _catalog" \
    "$(jq -r '.repositories | index("docker.io/proxytest/sk-mir") != null' "$T/catalog.json")" true
}
test_crane_mirror() { pull_case crane cr-mir proxytest/cr-mir; }

test_mirror_library_prefix() {
  local d
  d="$(want main .small.manifest)"
  check_eq "crane digest libtest:v1 (single-segment name -> library/libtest)" \
    "$(t crane digest --insecure "$BERTH_HOST/libtest:v1")" "$d"
  check_eq "crane digest library/libtest:v1" "$(t crane digest --insecure "$BERTH_HOST/library/libtest:v1")" "$d"
  # containerd's form: host-less path plus ?ns=docker.io
  check_eq "GET /v2/library/libtest/manifests/v1?ns=docker.io" "$(fetch GET "/v2/library/libtest/manifests/v1?ns=docker.io")" 200
  check_eq "its digest" "$(hdr "$T/h" Docker-Content-Digest)" "$d"
  echo "(info) OCI-Namespace header: '$(hdr "$T/h" OCI-Namespace)'"
  # ns naming no configured upstream: nothing to fetch from
  local code
  code="$(fetch GET "/v2/library/libtest-nowhere/manifests/v1?ns=quay.io")"
  echo "(info) ?ns=quay.io (no such upstream) -> HTTP $code: $(head -c 300 "$T/b")"
  [ "${code:0:1}" != 2 ] || { echo "a pull with an unconfigured ns succeeded"; return 1; }
}

test_local_wins() {
  local mine theirs
  mine="$(want localwins .small.manifest)"
  theirs="$(want main .small.manifest)"
  check_eq "upstream proxytest/localwins:v1" "$(t crane digest --insecure "$UP_HOST/proxytest/localwins:v1")" "$theirs"
  t crane push --insecure "$IMG/localwins/small" "$BERTH_HOST/proxytest/localwins:v1" >/dev/null
  check_eq "berth proxytest/localwins:v1 (the local one)" "$(t crane digest --insecure "$BERTH_HOST/proxytest/localwins:v1")" "$mine"
  check_eq "X-Berth-Cache on a local manifest" "$(cache_header GET /v2/proxytest/localwins/manifests/v1)" "200 "
}

test_push_refused() {
  local code
  if t crane push --insecure "$IMG/localwins/small" "$BERTH_HOST/docker.io/proxytest/pushed:v1" >"$T/push.log" 2>&1; then
    echo "crane push into the docker.io namespace succeeded"; return 1
  fi
  echo "ok: crane push refused: $(grep -o 'DENIED.*' "$T/push.log" | head -n 1)"
  grep -q DENIED "$T/push.log" || { echo "crane's error does not say DENIED:"; cat "$T/push.log"; return 1; }
  code="$(fetch POST /v2/docker.io/proxytest/pushed/blobs/uploads/)"
  check_eq "POST upload into docker.io/ -> status" "$code" 403
  check_eq "error code" "$(jq -r '.errors[0].code' "$T/b")" DENIED
  echo "ok: message: $(jq -r '.errors[0].message' "$T/b")"
  code="$(curl -s -o "$T/b" -w '%{http_code}' --max-time 30 -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$IMG/localwins/small/blobs/sha256/$(want localwins .small.manifest | cut -d: -f2)" \
    "$BERTH_URL/v2/failover/proxytest/pushed/manifests/v1")"
  check_eq "PUT manifest into failover/ -> status" "$code" 403
}

test_failover() {
  local d
  d="$(want sk-ns .multiarch.index)"
  # fo-dead (priority 1) refuses connections; fo-live (priority 2) serves
  check_eq "crane digest failover/proxytest/sk-ns:v1" "$(t crane digest --insecure "$BERTH_HOST/failover/proxytest/sk-ns:v1")" "$d"
  pull_skopeo "$BERTH_HOST/failover/proxytest/cr-ns:v1" "$T/fo"
  check_eq "skopeo pull through failover/: index digest" "$(layout_digest "$T/fo")" "$(want cr-ns .multiarch.index)"
  # "hang" (priority 1) accepts and never answers (timeout 2s); hang-live serves
  local start=$SECONDS
  check_eq "crane digest failover-hang/proxytest/cr-mir:v1" \
    "$(t crane digest --insecure "$BERTH_HOST/failover-hang/proxytest/cr-mir:v1")" "$(want cr-mir .multiarch.index)"
  echo "(info) failover past a hanging upstream took $((SECONDS - start))s"
}

test_management_api() {
  local code
  code="$(curl -s -o "$T/up.json" -w '%{http_code}' --max-time 30 "$BERTH_URL/api/accel/upstreams")"
  check_eq "GET /api/accel/upstreams" "$code" 200
  check_eq "success" "$(jq -r .success "$T/up.json")" true
  check_eq "upstream names" "$(jq -r '[.data.upstreams[].name] | sort | join(",")' "$T/up.json")" "fo-dead,fo-live,hang,hang-live,hub"
  curl -s --max-time 30 "$BERTH_URL/api/accel/upstreams/hub/health" >"$T/h1.json"
  check_eq "hub health" "$(jq -r .data.healthy "$T/h1.json")" true
  curl -s --max-time 30 "$BERTH_URL/api/accel/upstreams/fo-dead/health" >"$T/h2.json"
  check_eq "fo-dead health" "$(jq -r .data.healthy "$T/h2.json")" false
  # the seed-000 raw pull endpoint goes through the same path; {name} = the image name (API.md D3)
  code="$(curl -s -o "$T/m.json" -D "$T/h" -w '%{http_code}' --max-time 30 "$BERTH_URL/api/accel/pull/docker.io/proxytest/sk-ns/manifests/v1")"
  check_eq "GET /api/accel/pull/docker.io/proxytest/sk-ns/manifests/v1" "$code" 200
  check_eq "its Docker-Content-Digest" "$(hdr "$T/h" Docker-Content-Digest)" "$(want sk-ns .multiarch.index)"
  curl -s --max-time 30 "$BERTH_URL/api/accel/cache/stats" >"$T/stats.json"
  cat "$T/stats.json"; echo
  check_eq "stats success" "$(jq -r .success "$T/stats.json")" true
  check_eq "entry_count > 0" "$(jq -r '.data.entry_count > 0' "$T/stats.json")" true
  check_eq "hit_count > 0" "$(jq -r '.data.hit_count > 0' "$T/stats.json")" true
  check_eq "miss_count > 0" "$(jq -r '.data.miss_count > 0' "$T/stats.json")" true
  check_eq "hit_rate = hits/(hits+misses)" \
    "$(jq -r '.data | ((.hit_rate - (.hit_count / (.hit_count + .miss_count))) | fabs) < 0.001' "$T/stats.json")" true
  curl -s --max-time 30 "$BERTH_URL/api/accel/cache/entries" >"$T/entries.json"
  check_eq "entries count = entry_count" "$(jq -r '.data.count' "$T/entries.json")" "$(jq -r .data.entry_count "$T/stats.json")"
  check_eq "arm64 config of sk-ns is an entry" \
    "$(jq -r --arg d "$(want sk-ns '.multiarch.platforms["linux/arm64"].config')" '[.data.entries[].digest] | index($d) != null' "$T/entries.json")" true
  curl -s --max-time 30 "$BERTH_URL/metrics" >"$T/metrics.txt"
  local m
  for m in berth_proxy_hits_total berth_proxy_misses_total berth_proxy_upstream_bytes_total; do
    grep -q "^$m" "$T/metrics.txt" || { echo "metric $m missing from /metrics"; return 1; }
    echo "ok: $(grep "^$m" "$T/metrics.txt" | head -n 1)"
  done
}

# 200 MiB blob: cold and warm through berth, then through distribution's proxy mode.
TIMING_LINE=""
# timed_get URL HEADERS_OUT -> seconds (time_total), fails unless 200
timed_get() {
  local out code time
  out="$(curl -s -o /dev/null -D "$2" -w '%{http_code} %{time_total}' --max-time 300 "$1")"
  code="${out% *}"; time="${out#* }"
  [ "$code" = 200 ] || { echo "GET $1 -> HTTP $code" >&2; return 1; }
  echo "$time"
}

# wait until distribution's proxy has stored the blob (it writes it in the background)
dist_wait_stored() { # DATA DIGEST
  local hex=${2#sha256:} f deadline=$((SECONDS + 60))
  f="$1/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ -f "$f" ] && return 0
    sleep 0.2
  done
  echo "distribution proxy did not store $2 within 60s" >&2
  return 1
}

time_distribution_proxy() {
  local blob cold warm
  blob="$(want main .big.big_layer)"
  [ -n "$DP_URL" ] || { echo "distribution's proxy did not start (see the setup log)"; return 1; }
  # like a client: the manifest first, then the blob
  curl -sf -o /dev/null --max-time 60 -H "Accept: $ACCEPT" "$DP_URL/v2/proxytest/big/manifests/v1"
  cold="$(timed_get "$DP_URL/v2/proxytest/big/blobs/$blob" "$T/dp-cold.h")" || return 1
  dist_wait_stored "$DP_DATA" "$blob" || return 1
  warm="$(timed_get "$DP_URL/v2/proxytest/big/blobs/$blob" "$T/dp-warm.h")" || return 1
  check_eq "distribution proxy: warm blob sha256" \
    "sha256:$(curl -sf --max-time 300 "$DP_URL/v2/proxytest/big/blobs/$blob" | sha256sum | cut -d' ' -f1)" "$blob"
  DP_COLD=$cold DP_WARM=$warm
  echo "distribution-proxy: cold ${cold}s warm ${warm}s"
}

time_berth() {
  local blob cold warm path=docker.io/proxytest/big
  blob="$(want main .big.big_layer)"
  curl -sf -o /dev/null --max-time 60 -H "Accept: $ACCEPT" "$BERTH_URL/v2/$path/manifests/v1"
  cold="$(timed_get "$BERTH_URL/v2/$path/blobs/$blob" "$T/b-cold.h")" || return 1
  check_eq "berth cold X-Berth-Cache" "$(hdr "$T/b-cold.h" X-Berth-Cache)" MISS
  check_eq "berth cold Content-Length" "$(hdr "$T/b-cold.h" Content-Length)" "$(want main .big.big_layer_size)"
  # verify-before-visible: the entry may take a moment after the last byte
  local deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ] && [ "$(cache_header HEAD "/v2/$path/blobs/$blob")" != "200 HIT" ]; do sleep 0.2; done
  warm="$(timed_get "$BERTH_URL/v2/$path/blobs/$blob" "$T/b-warm.h")" || return 1
  check_eq "berth warm X-Berth-Cache" "$(hdr "$T/b-warm.h" X-Berth-Cache)" HIT
  check_eq "berth warm blob sha256" \
    "sha256:$(curl -sf --max-time 300 "$BERTH_URL/v2/$path/blobs/$blob" | sha256sum | cut -d' ' -f1)" "$blob"
  # a full pull of the big image from the cache
  pull_skopeo "$BERTH_HOST/$path:v1" "$T/big"
  check_eq "skopeo pull of the big image: manifest digest" "$(layout_digest "$T/big")" "$(want main .big.manifest)"
  BERTH_COLD=$cold BERTH_WARM=$warm
  echo "berth: cold ${cold}s warm ${warm}s"
}

test_timing_200mib() {
  BERTH_COLD=- BERTH_WARM=- DP_COLD=- DP_WARM=-
  local rc=0
  if [ "$PEERS_ONLY" = 0 ]; then time_berth || rc=1; fi
  time_distribution_proxy || rc=1
  TIMING_LINE="TIMING ${BIG_LAYER_MIB} MiB blob over loopback: berth cold=${BERTH_COLD}s warm=${BERTH_WARM}s distribution-proxy cold=${DP_COLD}s warm=${DP_WARM}s"
  echo "$TIMING_LINE"
  echo "$TIMING_LINE" >"$WORK/timing.txt"
  return "$rc"
}

# containerd as a mirror client: docker.io/library/ctrtest:v1 through hosts.toml -> MIRROR_HOST
CONTAINERD_NOTE=""
containerd_feasible() {
  if [ "${PROXY_CONTAINERD:-1}" = 0 ]; then CONTAINERD_NOTE="PROXY_CONTAINERD=0"; return 1; fi
  if ! command -v containerd >/dev/null 2>&1 || ! command -v ctr >/dev/null 2>&1; then
    if [ "${PROXY_INSTALL:-1}" = 1 ] && command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
      log "installing containerd with apt (Debian's package; its service is not used)"
      (apt_install containerd) >"$WORK/containerd-install.log" 2>&1 || true
      if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
        log "note: the packaged containerd service is running on this host; this test uses its own instance"
      fi
    fi
    if ! command -v containerd >/dev/null 2>&1 || ! command -v ctr >/dev/null 2>&1; then
      CONTAINERD_NOTE="containerd/ctr not installed ($(apt-cache policy containerd 2>/dev/null | awk '/Candidate/{print "apt candidate " $2}'))"
      return 1
    fi
  fi
  return 0
}

UP_URL="" UP_HOST="" BERTH_PID="" CTRD_PID="" CTRD_SOCK=""
start_containerd() {
  local d="$WORK/containerd"
  mkdir -p "$d"
  chmod 711 "$d"
  CTRD_SOCK="$d/containerd.sock"
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
  start_bg CTRD_PID "$d/containerd.log" containerd --config "$d/config.toml"
  local deadline=$((SECONDS + 20))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$CTRD_PID" 2>/dev/null || break
    ctr --address "$CTRD_SOCK" version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  CONTAINERD_NOTE="containerd did not start as $(id -un) with root/state under $d: $(tail -n 3 "$d/containerd.log" | tr '\n' ' ' | cut -c1-300)"
  _lib_kill_tree "$CTRD_PID"
  return 1
}

# ctr_pull MIRROR_HOST: pull docker.io/library/ctrtest:v1 with hosts.toml naming MIRROR_HOST
ctr_pull() {
  local mirror=$1 hosts="$T/certs.d" ref=docker.io/library/ctrtest:v1 snap
  mkdir -p "$hosts/docker.io"
  cat >"$hosts/docker.io/hosts.toml" <<EOF
server = "https://registry-1.docker.io"

[host."http://$mirror"]
  capabilities = ["pull", "resolve"]
EOF
  # overlayfs needs privileges a container may lack; native always works
  snap=native
  t ctr --address "$CTRD_SOCK" images pull --hosts-dir "$hosts" --snapshotter "$snap" --platform linux/amd64 "$ref" >"$T/ctr-pull.log" 2>&1 \
    || { cat "$T/ctr-pull.log"; return 1; }
  tail -n 3 "$T/ctr-pull.log"
  check_eq "containerd image digest" \
    "$(ctr --address "$CTRD_SOCK" images ls | awk -v r="$ref" '$1==r{print $3}')" "$(want ctr .multiarch.index)"
  t ctr --address "$CTRD_SOCK" images check | grep -F "$ref" | tee "$T/ctr-check.txt"
  grep -q complete "$T/ctr-check.txt" || { echo "ctr images check: not complete"; return 1; }
}

test_containerd_mirror() {
  if [ -z "$CTRD_PID" ]; then
    echo "containerd: NOT RUN ($CONTAINERD_NOTE)"
    return 0
  fi
  if [ "$PEERS_ONLY" = 1 ]; then
    # distribution's proxy (of the same upstream) as the mirror: checks the ctr machinery only
    ctr_pull "$DP_HOST"
    echo "containerd: RAN ($(containerd --version | awk '{print $3}'), mirror pull through distribution's proxy mode, --peers-only)"
    return 0
  fi
  ctr_pull "$BERTH_HOST"
  # it really went through berth, and the mirror request landed in the docker.io namespace
  check_eq "berth cached docker.io/library/ctrtest (HEAD by digest)" \
    "$(cache_header HEAD "/v2/docker.io/library/ctrtest/manifests/$(want ctr .multiarch.index)")" "200 HIT"
  echo "containerd: RAN ($(containerd --version | awk '{print $3}'), mirror pull through berth)"
}

test_upstream_killed() {
  _lib_kill_tree "$UP_PID"
  log "upstream distribution stopped"
  sleep "$((TAG_TTL_S + 1))" # past tag_ttl: tags must be revalidated, and that fails
  local d got
  d="$(want sk-ns .multiarch.index)"
  check_eq "crane digest of a cached tag (namespaced)" "$(t crane digest --insecure "$BERTH_HOST/docker.io/proxytest/sk-ns:v1")" "$d"
  check_eq "crane digest of a cached tag (mirror)" "$(t crane digest --insecure "$BERTH_HOST/proxytest/sk-mir:v1")" "$(want sk-mir .multiarch.index)"
  got="$(cache_header GET /v2/docker.io/proxytest/sk-ns/manifests/v1)"
  check_eq "GET cached tag, upstream down (status, X-Berth-Cache)" "$got" "200 STALE"
  check_eq "Warning header" "$(hdr "$T/h" Warning)" '110 - "Response is Stale"'
  pull_skopeo "$BERTH_HOST/docker.io/proxytest/sk-ns:v1" "$T/stale"
  check_eq "full skopeo pull with the upstream down: index digest" "$(layout_digest "$T/stale")" "$d"
  pull_crane "$BERTH_HOST/proxytest/cr-mir:v1" "$T/stale-crane"
  check_eq "full crane pull (mirror) with the upstream down: index digest" "$(layout_digest "$T/stale-crane")" "$(want cr-mir .multiarch.index)"
  # never cached: must fail, quickly, with an error that says why
  local start code
  if t crane digest --insecure "$BERTH_HOST/docker.io/proxytest/uncached:v1" >"$T/uncached.log" 2>&1; then
    echo "an uncached tag pulled with the upstream down"; cat "$T/uncached.log"; return 1
  fi
  echo "ok: crane fails on the uncached tag: $(tail -n 1 "$T/uncached.log")"
  start=$SECONDS
  code="$(fetch GET /v2/docker.io/proxytest/uncached/manifests/v1)"
  echo "ok: GET uncached tag -> HTTP $code in $((SECONDS - start))s: $(head -c 400 "$T/b")"
  [ "${code:0:1}" = 4 ] || [ "${code:0:1}" = 5 ] || { echo "want a 4xx/5xx"; return 1; }
  check_eq "error body has a code and a message" "$(jq -r '.errors[0] | (.code|length>0) and (.message|length>0)' "$T/b" 2>/dev/null)" true
  [ $((SECONDS - start)) -lt 30 ] || { echo "the failure took $((SECONDS - start))s"; return 1; }
}

# --- runner ------------------------------------------------------------------------------------
if [ "$PEERS_ONLY" = 1 ]; then
  TESTS=(timing-200mib containerd-mirror)
else
  TESTS=(
    skopeo-namespaced crane-namespaced skopeo-mirror crane-mirror mirror-library-prefix
    local-wins push-refused failover timing-200mib containerd-mirror management-api upstream-killed
  )
fi
[ -z "${PROXY_TESTS:-}" ] || read -r -a TESTS <<<"$PROXY_TESTS"

if [ "$PEERS_ONLY" = 0 ]; then
  # before the slow setup: the same configuration with placeholder addresses
  UP_URL=http://127.0.0.1:1 DEAD_URL=http://127.0.0.1:2 BLACKHOLE_URL=http://127.0.0.1:3 write_berth_config "$WORK/preflight.toml"
  berth_config_check "$WORK/preflight.toml"
fi
make_images
start_distribution UP upstream || die "could not start the upstream distribution"
load_upstream || die "could not load the upstream"
DEAD_URL="http://127.0.0.1:$(free_port)" # nothing listens there
start_blackhole || die "could not start the hanging upstream"
if [ "$PEERS_ONLY" = 0 ]; then
  start_berth || die "could not start berth"
fi
# Everything is started here, not inside a test: the tests run in subshells, whose processes the
# exit trap would not know about.
DP_URL="" DP_HOST=""
if printf '%s\n' "${TESTS[@]}" | grep -qx 'timing-200mib' || { [ "$PEERS_ONLY" = 1 ] && printf '%s\n' "${TESTS[@]}" | grep -qx 'containerd-mirror'; }; then
  start_distribution DP dist-proxy "$UP_URL" || log "distribution in proxy mode did not start"
fi
if printf '%s\n' "${TESTS[@]}" | grep -qx 'containerd-mirror'; then
  if containerd_feasible && start_containerd; then
    log "containerd $(containerd --version | awk '{print $3}') running as $(id -un) (socket $CTRD_SOCK)"
  else
    CTRD_PID=""
    log "containerd: NOT RUN ($CONTAINERD_NOTE)"
  fi
fi
log "setup done in $((SECONDS - STARTED))s"

CONTAINERD_RESULT="containerd: NOT RUN (test not selected)"
passed=0 failed=0 failed_names=()
for name in "${TESTS[@]}"; do
  fn="test_${name//-/_}"
  declare -F "$fn" >/dev/null || die "unknown test $name (known: ${TESTS[*]})"
  T="$WORK/t/$name"
  mkdir -p "$T"
  start=$SECONDS
  set +e
  (set -euo pipefail; "$fn") >"$T/log" 2>&1
  rc=$?
  set -e
  # the subshell's variables are lost: the tests that report figures print them, read here
  case "$name" in
    timing-200mib) TIMING_LINE="$(grep '^TIMING ' "$T/log" | tail -n 1)" ;;
    containerd-mirror) CONTAINERD_RESULT="$(grep -E '^containerd: ' "$T/log" | tail -n 1)"
      [ -n "$CONTAINERD_RESULT" ] || CONTAINERD_RESULT="containerd: RAN ($( [ "$rc" = 0 ] && echo passed || echo failed))" ;;
  esac
  alive=1
  if [ "$PEERS_ONLY" = 0 ] && ! kill -0 "$BERTH_PID" 2>/dev/null; then alive=0; fi
  if [ "$rc" = 0 ] && [ "$alive" = 1 ] && grep -q '^containerd: NOT RUN' "$T/log"; then
    echo "SKIP $name (${CONTAINERD_RESULT#containerd: })"
  elif [ "$rc" = 0 ] && [ "$alive" = 1 ]; then
    echo "PASS $name ($((SECONDS - start))s)"
    passed=$((passed + 1))
  else
    echo "FAIL $name ($((SECONDS - start))s, exit $rc)"
    sed 's/^/    | /' "$T/log" | tail -n 25
    [ "$alive" = 1 ] || { echo "    | berth is gone"; tail -n 20 "$BERTH_LOG" | sed 's/^/    | /'; }
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
done

echo
[ -z "$TIMING_LINE" ] || echo "$TIMING_LINE"
echo "$CONTAINERD_RESULT"
if [ "$failed" -gt 0 ]; then
  echo "failed: ${failed_names[*]}"
  [ "$PEERS_ONLY" = 1 ] || { echo "----- last lines of $BERTH_LOG -----"; tail -n 15 "$BERTH_LOG"; }
fi
echo "$passed passed, $failed failed ($((SECONDS - STARTED))s)"
[ "$failed" -eq 0 ]
