#!/usr/bin/env bash
# Scale-out tests: three berth nodes sharing one PostgreSQL database and one S3 bucket prefix,
# with real clients, cross-node chunked uploads, races, a node killed mid-upload, and faults of
# the backends (PostgreSQL restarted, S3 unreachable). Prints "PASS name" / "FAIL name" per check
# and ends with "N passed, M failed"; exits non-zero on any failure.
#
#   scripts/scale-out.sh [CHECK...]      default: all checks, in this order:
#     clients-push-pull       skopeo and crane push through node 1, pull through nodes 2 and 3
#     chunked-across-nodes    POST/PATCH/PATCH/PUT on different nodes (big and tiny chunks)
#     concurrent-same-blob    the same blob pushed at once through every node
#     concurrent-same-tag     different manifests pushed at once to one tag through every node
#     tag-move-visibility     a tag moved on node 1 is seen by node 2 within ~1 s; digests at once
#     kill-node-mid-upload    SIGKILL a node mid-upload: nothing acknowledged is lost, the
#                             interrupted session continues on another node
#     fault-postgres-restart  PostgreSQL stopped/restarted under traffic: 503 (never 500) while
#                             down, no internals in the body, recovery without restarting berth
#     fault-s3-down           versitygw stopped: blob push/pull 503, no half-written metadata,
#                             recovery without restarting berth
#
# Starts its own throwaway PostgreSQL and versitygw (lib.sh services_start), so the fault checks
# can stop and restart them; everything is stopped on exit. Berth: $BERTH_BIN (default the debug
# build). SCALE_BIG_MIB (default 24) sizes the big image's layer; TAG_VISIBLE_MAX_MS (default 1500)
# bounds the tag-move visibility delay.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHECKS=(
  clients-push-pull chunked-across-nodes concurrent-same-blob concurrent-same-tag
  tag-move-visibility kill-node-mid-upload fault-postgres-restart fault-s3-down
)
[ $# -eq 0 ] || CHECKS=("$@")

CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-300}"
TAG_VISIBLE_MAX_MS="${TAG_VISIBLE_MAX_MS:-1500}"
MIB=1048576

for tool in skopeo crane jq curl python3 setsid runuser; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/install-deps.sh"
done
[ -x "$BERTH_BIN" ] || die "berth binary not found at $BERTH_BIN (cargo build -p berth, or set BERTH_BIN)"

lib_tmpdir WORK scale-out
IMG="$WORK/images"

# Authentication is on, as in production: the nodes share the admin (created by whichever node
# starts first) and the token signing key (kept in the shared database), so a token or login
# from one node is honoured by the others. rcurl (lib.sh) sends these credentials.
export REGISTRY_USER=admin
REGISTRY_PASSWORD="pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export REGISTRY_PASSWORD

# --- client isolation (as in clients.sh) ---------------------------------------------------------
export DOCKER_CONFIG="$WORK/docker" REGISTRY_AUTH_FILE="$WORK/auth.json"
export CONTAINERS_REGISTRIES_CONF="$WORK/containers/registries.conf"
export CONTAINERS_CONF="$WORK/containers/containers.conf"
export CONTAINERS_STORAGE_CONF="$WORK/containers/storage.conf"
mkdir -p "$DOCKER_CONFIG" "$WORK/containers"
echo '{}' >"$DOCKER_CONFIG/config.json"
echo '{}' >"$REGISTRY_AUTH_FILE"
printf 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n' >"$CONTAINERS_REGISTRIES_CONF"
: >"$CONTAINERS_CONF"
printf '[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n' "$WORK/c/run" "$WORK/c/storage" >"$CONTAINERS_STORAGE_CONF"

t() {
  local cmd=$1
  shift
  case "$cmd" in
    skopeo) timeout "$CLIENT_TIMEOUT" skopeo --insecure-policy "$@" ;;
    *) timeout "$CLIENT_TIMEOUT" "$cmd" "$@" ;;
  esac
}

# --- processes ----------------------------------------------------------------------------------
# Checks run in subshells and may (re)start nodes or versitygw: every pid goes to $WORK/pids (all
# killed on exit) and the current pid of each process to $WORK/<name>.pid, re-read after a check.
: >"$WORK/pids"
record_pid() {
  echo "$2" >"$WORK/$1.pid"
  echo "$2" >>"$WORK/pids"
}
kill_recorded() {
  local pid
  while read -r pid; do _lib_kill_tree "$pid"; done <"$WORK/pids"
}
lib_on_exit kill_recorded

s3_restart() {
  s3_start || return 1
  record_pid s3 "$SVC_S3_PID"
}

NODE_PID=() NODE_PORT=() NODE_HOST=() NODE_URL=() NODE_LOG=()

# node_start I: start (or restart, on the same port) node I against the shared backends.
node_start() {
  local i=$1 dir="$WORK/node$1" attempt deadline
  mkdir -p "$dir/data"
  for attempt in 1 2 3; do
    [ -n "${NODE_PORT[$i]:-}" ] || NODE_PORT[i]="$(free_port)"
    NODE_HOST[i]="127.0.0.1:${NODE_PORT[$i]}"
    NODE_URL[i]="http://${NODE_HOST[$i]}"
    NODE_LOG[i]="$dir/berth.log"
    printf -- '--- start %s\n' "$(date +%T)" >>"${NODE_LOG[$i]}"
    setsid env -u BERTH_BACKEND "${BERTH_BACKEND_ENV[@]}" BERTH_AUTH__MODE=token BERTH_ADMIN_PASSWORD="$REGISTRY_PASSWORD" BERTH_RATE_LIMIT__ENABLED=false \
      "$BERTH_BIN" serve --listen "${NODE_HOST[$i]}" \
      --data-dir "$dir/data" --database-url "$BERTH_BACKEND_DB_URL" --storage "$BERTH_BACKEND_STORAGE_URL" \
      >>"${NODE_LOG[$i]}" 2>&1 </dev/null &
    NODE_PID[i]=$!
    record_pid "node$i" "${NODE_PID[$i]}"
    disown "${NODE_PID[$i]}" # its SIGKILL in a check is no job notice here
    deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ] && kill -0 "${NODE_PID[$i]}" 2>/dev/null; do
      if [ "$(rcurl -s -o /dev/null -w '%{http_code}' --max-time 2 "${NODE_URL[$i]}/v2/")" = 200 ]; then
        log "node $i ready at ${NODE_URL[$i]} (pid ${NODE_PID[$i]})"
        return 0
      fi
      sleep 0.2
    done
    tail -n 20 "${NODE_LOG[$i]}" >&2
    kill -0 "${NODE_PID[$i]}" 2>/dev/null && { _lib_kill_tree "${NODE_PID[$i]}"; return 1; }
    grep -qiE 'address (already )?in use' "${NODE_LOG[$i]}" || return 1
    NODE_PORT[i]=""
  done
  return 1
}

node_alive() { kill -0 "${NODE_PID[$1]}" 2>/dev/null; }

nodes_alive() {
  local i ok=0
  for i in 1 2 3; do
    node_alive "$i" || { echo "node $i (pid ${NODE_PID[$i]}) is gone; log tail:"; tail -n 15 "${NODE_LOG[$i]}"; ok=1; }
  done
  return "$ok"
}

# --- HTTP helpers --------------------------------------------------------------------------------
# req NODE METHOD PATH [curl args...]: prints the status; headers in $T/h, body in $T/b.
req() {
  local node=$1 method=$2 path=$3 m
  shift 3
  if [ "$method" = HEAD ]; then m=(--head); else m=(-X "$method"); fi
  rcurl -s -o "$T/b" -D "$T/h" -w '%{http_code}' --max-time "${REQ_TIMEOUT:-60}" "${m[@]}" "$@" \
    "${NODE_URL[$node]}$path" || true
}
# hdr NAME: a header of the last req
hdr() { tr -d '\r' <"$T/h" | awk -v n="$1" -F': ' 'tolower($1)==tolower(n){print $2}' | tail -n 1; }

MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
ACCEPT="Accept: $MT_MANIFEST, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

sha() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
fsize() { stat -c %s "$1"; }
rand_file() { head -c "$2" /dev/urandom >"$1"; }
# slice FILE OFFSET [LEN]: bytes of FILE on stdout (no pipe that could end in SIGPIPE)
slice() {
  if [ $# -ge 3 ]; then
    dd if="$1" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
  else
    dd if="$1" bs=1M iflag=skip_bytes skip="$2" status=none
  fi
}


# push_blob NODE REPO FILE: monolithic POST ?digest=; prints the status.
push_blob() {
  req "$1" POST "/v2/$2/blobs/uploads/?digest=$(sha "$3")" -H 'Content-Type: application/octet-stream' \
    --data-binary "@$3"
}

# make_manifest OUT CONFIG_FILE LAYER_FILE...: an OCI image manifest over existing blob files.
make_manifest() {
  local out=$1 cfg=$2 layers="" f
  shift 2
  for f in "$@"; do
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$(sha "$f")\",\"size\":$(fsize "$f")}"
  done
  printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$MT_MANIFEST" "$(sha "$cfg")" "$(fsize "$cfg")" "$layers" >"$out"
}

# make_config OUT LABEL: a small image config, unique per LABEL.
make_config() {
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"test":"%s"}}}' "$2" >"$1"
}

# push_manifest NODE REPO REF FILE: prints the status.
push_manifest() {
  req "$1" PUT "/v2/$2/manifests/$3" -H "Content-Type: $MT_MANIFEST" --data-binary "@$4"
}

# manifest_digest NODE REPO REF: Docker-Content-Digest of GET (sha256 of the body checked too).
manifest_digest() {
  local code
  code="$(req "$1" GET "/v2/$2/manifests/$3" -H "$ACCEPT")"
  if [ "$code" != 200 ]; then echo "HTTP$code"; return 0; fi
  if [ "$(hdr docker-content-digest)" != "$(sha "$T/b")" ]; then
    echo "header $(hdr docker-content-digest) != body $(sha "$T/b")"; return 0
  fi
  sha "$T/b"
}

# blob_ok NODE REPO FILE: HEAD and GET the blob of FILE on NODE and compare size and digest.
blob_ok() {
  local node=$1 repo=$2 file=$3 d code
  d="$(sha "$file")"
  code="$(req "$node" HEAD "/v2/$repo/blobs/$d")"
  check_eq "node $node HEAD $repo@${d:7:12} status" "$code" 200 || return 1
  check_eq "node $node HEAD Content-Length" "$(hdr content-length)" "$(fsize "$file")" || return 1
  code="$(req "$node" GET "/v2/$repo/blobs/$d")"
  check_eq "node $node GET $repo@${d:7:12} status" "$code" 200 || return 1
  check_eq "node $node GET body digest" "$(sha "$T/b")" "$d"
}

# blob_absent NODE REPO DIGEST
blob_absent() {
  check_eq "node $1 HEAD $2@${3:7:12} (must not exist)" "$(req "$1" HEAD "/v2/$2/blobs/$3")" 404
}

# no_internals: the body of the last req is the generic error (no backend details leak).
no_internals() {
  if grep -qiE 'postgres|sqlx|pool|database|connection|refused|127\.0\.0\.1|localhost|versity|object_store|s3|bucket|endpoint|tcp|error sending|os error|panick' "$T/b"; then
    echo "error body leaks internal details: $(head -c 400 "$T/b")"
    return 1
  fi
  jq -e '.errors[0].code' "$T/b" >/dev/null 2>&1 || { echo "error body is not an OCI error: $(head -c 300 "$T/b")"; return 1; }
  echo "ok: error body is generic: $(head -c 200 "$T/b")"
}

# want_503 WHAT CODE: a backend outage must answer 503 with a generic body (HEAD: no body).
want_503() {
  if [ "$2" = 503 ]; then
    echo "ok: $1 -> 503 (Retry-After: $(hdr retry-after))"
    [[ $1 == *HEAD* ]] || no_internals
  else
    echo "MISMATCH $1: HTTP $2 during the outage, want 503; body: $(head -c 300 "$T/b" 2>/dev/null)"
    return 1
  fi
}

# probe_503 WHAT NODE METHOD PATH [curl args...]: the request must answer 503 with a generic body.
probe_503() {
  local what=$1 node=$2 method=$3 path=$4 t0 code rc=0
  shift 4
  t0="$(now_ms)"
  code="$(req "$node" "$method" "$path" "$@")"
  want_503 "$what" "$code" || rc=1
  echo "    (answered in $(($(now_ms) - t0)) ms)"
  return "$rc"
}

# bg_probe ARGS...: probe_503 ARGS in the background; wait_probes waits for all, prints their
# output in order and fails if any failed.
PROBE_PIDS=()
bg_probe() {
  local i=${#PROBE_PIDS[@]}
  in_sub "probe$i" probe_503 "$@" >"$T/probe$i.log" 2>&1 &
  PROBE_PIDS+=($!)
}
wait_probes() {
  local i rc=0
  for i in "${!PROBE_PIDS[@]}"; do
    wait "${PROBE_PIDS[$i]}" || rc=1
    cat "$T/probe$i.log"
  done
  PROBE_PIDS=()
  return "$rc"
}

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# --- checks --------------------------------------------------------------------------------------
check_clients_push_pull() {
  local name n d p
  # skopeo: small, multi-arch (all platforms) and big through node 1
  t skopeo copy --preserve-digests --dest-tls-verify=false "oci:$IMG/small" "docker://${NODE_HOST[1]}/scale/skopeo-small:v1"
  t skopeo copy --all --preserve-digests --dest-tls-verify=false "oci:$IMG/multiarch" "docker://${NODE_HOST[1]}/scale/skopeo-multi:v1"
  t skopeo copy --preserve-digests --dest-tls-verify=false "oci:$IMG/big" "docker://${NODE_HOST[1]}/scale/skopeo-big:v1"
  # crane: small and multi-arch through node 1
  t crane push --insecure "$IMG/small" "${NODE_HOST[1]}/scale/crane-small:v1"
  t crane push --insecure "$IMG/multiarch" "${NODE_HOST[1]}/scale/crane-multi:v1"
  for n in 2 3; do
    check_eq "node $n skopeo-small digest" "$(t crane digest --insecure "${NODE_HOST[$n]}/scale/skopeo-small:v1")" "$(want .small.manifest)"
    check_eq "node $n skopeo-multi digest" "$(t crane digest --insecure "${NODE_HOST[$n]}/scale/skopeo-multi:v1")" "$(want .multiarch.index)"
    check_eq "node $n skopeo-big digest" "$(t crane digest --insecure "${NODE_HOST[$n]}/scale/skopeo-big:v1")" "$(want .big.manifest)"
    check_eq "node $n crane-small digest" "$(t crane digest --insecure "${NODE_HOST[$n]}/scale/crane-small:v1")" "$(want .small.manifest)"
    check_eq "node $n crane-multi digest" "$(t crane digest --insecure "${NODE_HOST[$n]}/scale/crane-multi:v1")" "$(want .multiarch.index)"
    for p in linux/amd64 linux/arm64; do
      check_eq "node $n crane-multi $p" "$(t crane digest --insecure --platform "$p" "${NODE_HOST[$n]}/scale/crane-multi:v1")" \
        "$(want ".multiarch.platforms[\"$p\"].manifest")"
    done
  done
  # full pulls (every blob re-hashed by the clients)
  t skopeo copy --all --preserve-digests --src-tls-verify=false "docker://${NODE_HOST[2]}/scale/skopeo-multi:v1" "oci:$T/multi2:v1"
  check_eq "skopeo pull multi-arch from node 2" "$(jq -r '.manifests[0].digest' "$T/multi2/index.json")" "$(want .multiarch.index)"
  t skopeo copy --preserve-digests --src-tls-verify=false "docker://${NODE_HOST[3]}/scale/skopeo-big:v1" "oci:$T/big3:v1"
  check_eq "skopeo pull big from node 3" "$(jq -r '.manifests[0].digest' "$T/big3/index.json")" "$(want .big.manifest)"
  d="$(want .big.big_layer)"
  check_eq "big layer pulled from node 3" "sha256:$(sha256sum "$T/big3/blobs/sha256/${d#sha256:}" | cut -d' ' -f1)" "$d"
  t crane pull --insecure --format oci "${NODE_HOST[2]}/scale/crane-small:v1" "$T/small2"
  check_eq "crane pull small from node 2" "$(jq -r '.manifests[0].digest' "$T/small2/index.json")" "$(want .small.manifest)"
  t crane pull --insecure --format oci "${NODE_HOST[3]}/scale/skopeo-small:v1" "$T/small3"
  check_eq "crane pull small from node 3" "$(jq -r '.manifests[0].digest' "$T/small3/index.json")" "$(want .small.manifest)"
  for name in skopeo-multi crane-multi skopeo-big; do
    t crane validate --insecure --remote "${NODE_HOST[3]}/scale/$name:v1"
  done
  echo "ok: crane validate --remote on node 3"
}
want() { jq -r "$1" "$IMG/digests.json"; }

# chunked_upload REPO FILE NODES SIZES: POST on the first node, one PATCH per size on the next
# nodes (Content-Range), PUT ?digest= with the rest of FILE on the last node.
chunked_upload() {
  local repo=$1 file=$2 nodes sizes code loc off=0 i=1 n len d
  read -r -a nodes <<<"$3"
  read -r -a sizes <<<"$4"
  d="$(sha "$file")"
  code="$(req "${nodes[0]}" POST "/v2/$repo/blobs/uploads/" -H 'Content-Length: 0')"
  check_eq "POST on node ${nodes[0]}" "$code" 202 || return 1
  loc="$(hdr location)"
  loc="/v2/${loc#*/v2/}"
  for len in "${sizes[@]}"; do
    n=${nodes[$i]}
    slice "$file" "$off" "$len" >"$T/chunk"
    code="$(req "$n" PATCH "$loc" -H 'Content-Type: application/octet-stream' \
      -H "Content-Range: $off-$((off + len - 1))" --data-binary "@$T/chunk")"
    check_eq "PATCH $off-$((off + len - 1)) on node $n" "$code" 202 || { head -c 300 "$T/b"; return 1; }
    off=$((off + len))
    check_eq "Range after PATCH" "$(hdr range)" "0-$((off - 1))" || return 1
    loc="$(hdr location)"
    loc="/v2/${loc#*/v2/}"
    i=$((i + 1))
  done
  n=${nodes[$i]}
  code="$(req "${nodes[0]}" GET "$loc")"
  check_eq "GET status on node ${nodes[0]}" "$code" 204 || return 1
  check_eq "status Range" "$(hdr range)" "0-$((off - 1))" || return 1
  slice "$file" "$off" >"$T/chunk"
  len="$(fsize "$T/chunk")"
  if [ "$len" -gt 0 ]; then
    code="$(req "$n" PUT "$loc$([[ $loc == *\?* ]] && echo '&' || echo '?')digest=$d" -H 'Content-Type: application/octet-stream' \
      -H "Content-Range: $off-$((off + len - 1))" --data-binary "@$T/chunk")"
  else
    code="$(req "$n" PUT "$loc$([[ $loc == *\?* ]] && echo '&' || echo '?')digest=$d" -H 'Content-Length: 0')"
  fi
  check_eq "PUT ?digest= (last $len bytes) on node $n" "$code" 201 || { head -c 300 "$T/b"; return 1; }
  check_eq "Docker-Content-Digest" "$(hdr docker-content-digest)" "$d"
}

check_chunked_across_nodes() {
  local n
  # 20 MiB in chunks that straddle the 8 MiB multipart parts; then tiny chunks (tail objects only)
  rand_file "$T/big.bin" $((20 * MIB))
  chunked_upload scale/chunked "$T/big.bin" "1 2 3 1" "$((3 * MIB)) $((11 * MIB))"
  rand_file "$T/tiny.bin" 70000
  chunked_upload scale/chunked "$T/tiny.bin" "3 1 2 3 1" "1 1000 50000"
  for n in 1 2 3; do
    blob_ok "$n" scale/chunked "$T/big.bin"
    blob_ok "$n" scale/chunked "$T/tiny.bin"
  done
  # a range read on another node
  check_eq "node 2 Range GET status" "$(req 2 GET "/v2/scale/chunked/blobs/$(sha "$T/big.bin")" -H 'Range: bytes=8388600-8388700')" 206
  check_eq "node 2 Range GET bytes" "$(sha256sum <"$T/b" | cut -d' ' -f1)" "$(slice "$T/big.bin" 8388600 101 | sha256sum | cut -d' ' -f1)"
}

# retry_503 OUT NODE cmd...: run a push helper, retrying (at most 3 times) only on 503; appends
# "code" per attempt to OUT.
retry_503() {
  local out=$1 attempt code
  shift
  for attempt in 1 2 3 4; do
    code="$("$@")"
    echo "$code" >>"$out"
    [ "$code" = 503 ] || break
    sleep 0.5
  done
}

# summarise_codes FILE WANT: ok when every final attempt answered WANT and retries were 503 only.
summarise_codes() {
  local file=$1 want=$2 bad
  echo "status codes: $(sort "$file" | uniq -c | awk '{printf "%s x%s  ", $2, $1}')"
  bad="$(grep -vxE "$want|503" "$file" || true)"
  [ -z "$bad" ] || { echo "unexpected statuses: $(echo "$bad" | sort | uniq -c | tr '\n' ' ')"; return 1; }
}

# in_sub DIR CMD...: run CMD with the request files ($T) in a subdirectory (for parallel requests).
in_sub() {
  local T="$T/$1"
  shift
  mkdir -p "$T"
  "$@"
}

# chunked_code OUT ARGS...: chunked_upload ARGS, appending 201 or "fail" to OUT (log in $T/log).
chunked_code() {
  local out=$1
  shift
  if chunked_upload "$@" >"$T/log" 2>&1; then echo 201 >>"$out"; else echo fail >>"$out"; cat "$T/log"; fi
}

check_concurrent_same_blob() {
  local n k pids=()
  rand_file "$T/same.bin" $((9 * MIB))
  rand_file "$T/same-small.bin" 4096
  # 3 monolithic pushes per node at once of a 9 MiB blob, and a chunked push of a small one
  for n in 1 2 3; do
    for k in 1 2 3; do
      in_sub "p$n$k" retry_503 "$T/codes-mono" push_blob "$n" scale/same "$T/same.bin" &
      pids+=($!)
    done
    in_sub "c$n" chunked_code "$T/codes-chunked" scale/same "$T/same-small.bin" "$n $(((n % 3) + 1)) $n" 1000 &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k"; done
  summarise_codes "$T/codes-mono" 201
  summarise_codes "$T/codes-chunked" 201
  for n in 1 2 3; do
    blob_ok "$n" scale/same "$T/same.bin"
    blob_ok "$n" scale/same "$T/same-small.bin"
  done
  nodes_alive
}

check_concurrent_same_tag() {
  local round n k pids i want_set got first
  rand_file "$T/layer.bin" 100000
  for n in 1 2 3; do check_eq "layer on node $n" "$(push_blob "$n" scale/tag "$T/layer.bin")" 201; done
  for round in 1 2 3 4 5; do
    pids=() want_set=""
    for i in 1 2 3 4 5 6; do
      make_config "$T/cfg$round-$i.json" "round $round writer $i"
      check_eq "config $round-$i" "$(push_blob $(((i % 3) + 1)) scale/tag "$T/cfg$round-$i.json")" 201 >/dev/null ||
        { echo "config $round-$i push failed: $(head -c 300 "$T/b")"; return 1; }
      make_manifest "$T/m$round-$i.json" "$T/cfg$round-$i.json" "$T/layer.bin"
      want_set+=" $(sha "$T/m$round-$i.json")"
    done
    for i in 1 2 3 4 5 6; do
      n=$(((i % 3) + 1))
      in_sub "w$round-$i" retry_503 "$T/codes" push_manifest "$n" scale/tag race "$T/m$round-$i.json" &
      pids+=($!)
    done
    for k in "${pids[@]}"; do wait "$k"; done
    sleep 1.2 # the cross-node cache lifetime
    first=""
    for n in 1 2 3; do
      got="$(manifest_digest "$n" scale/tag race)"
      [ -n "$first" ] || first="$got"
      check_eq "round $round: node $n serves the same digest for the tag" "$got" "$first" >/dev/null || {
        echo "round $round: node $n serves $got, node 1 serves $first"; return 1; }
    done
    [[ " $want_set " == *" $first "* ]] || { echo "round $round: tag points to $first, which nobody pushed"; return 1; }
    echo "ok: round $round: all nodes serve $first for the tag"
    for i in 1 2 3 4 5 6; do
      n=$(((i + round) % 3 + 1))
      check_eq "round $round manifest $i by digest on node $n" "$(manifest_digest "$n" scale/tag "$(sha "$T/m$round-$i.json")")" \
        "$(sha "$T/m$round-$i.json")" >/dev/null || { echo "manifest $round-$i missing on node $n"; return 1; }
    done
  done
  summarise_codes "$T/codes" 201
  # crane pushes of one image to one tag through all nodes at once
  pids=()
  for n in 1 2 3; do
    (t crane push --insecure "$IMG/multiarch" "${NODE_HOST[$n]}/scale/crane-race:v1" >"$T/crane$n.log" 2>&1 ||
      { echo "crane push through node $n failed:"; cat "$T/crane$n.log"; exit 1; }) &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k"; done
  for n in 1 2 3; do
    check_eq "crane-race digest on node $n" "$(t crane digest --insecure "${NODE_HOST[$n]}/scale/crane-race:v1")" "$(want .multiarch.index)"
  done
  check_eq "tags of scale/tag on node 2" "$(req 2 GET /v2/scale/tag/tags/list >/dev/null; jq -c .tags "$T/b")" '["race"]'
  nodes_alive
}

check_tag_move_visibility() {
  local a b start elapsed got
  rand_file "$T/layer.bin" 5000
  push_blob 1 scale/move "$T/layer.bin" >/dev/null
  make_config "$T/ca.json" move-a; make_config "$T/cb.json" move-b
  push_blob 1 scale/move "$T/ca.json" >/dev/null; push_blob 1 scale/move "$T/cb.json" >/dev/null
  make_manifest "$T/a.json" "$T/ca.json" "$T/layer.bin"; make_manifest "$T/b.json" "$T/cb.json" "$T/layer.bin"
  a="$(sha "$T/a.json")"; b="$(sha "$T/b.json")"
  check_eq "push A as :moving on node 1" "$(push_manifest 1 scale/move moving "$T/a.json")" 201
  sleep 1.2
  check_eq "node 2 sees A (and caches it)" "$(manifest_digest 2 scale/move moving)" "$a"
  check_eq "node 2: B by digest before its push" "$(req 2 GET "/v2/scale/move/manifests/$b" -H "$ACCEPT")" 404
  check_eq "node 2: B HEAD before its push" "$(req 2 HEAD "/v2/scale/move/manifests/$b" -H "$ACCEPT")" 404
  manifest_digest 2 scale/move moving >/dev/null # warm the cache right before the move
  check_eq "move :moving to B on node 1" "$(push_manifest 1 scale/move moving "$T/b.json")" 201
  start="$(now_ms)"
  # digest references must be visible at once
  check_eq "node 2: B by digest right after the push" "$(manifest_digest 2 scale/move "$b")" "$b"
  check_eq "node 3: B HEAD right after the push" "$(req 3 HEAD "/v2/scale/move/manifests/$b" -H "$ACCEPT")" 200
  while :; do
    got="$(manifest_digest 2 scale/move moving)"
    elapsed=$(($(now_ms) - start))
    [ "$got" != "$b" ] || break
    [ "$got" = "$a" ] || { echo "node 2 served $got for :moving"; return 1; }
    [ "$elapsed" -lt 10000 ] || { echo "node 2 still serves A ${elapsed} ms after the move"; return 1; }
    sleep 0.05
  done
  echo "node 2 saw the tag move after ${elapsed} ms (limit ${TAG_VISIBLE_MAX_MS} ms)"
  [ "$elapsed" -le "$TAG_VISIBLE_MAX_MS" ] || { echo "too slow: ${elapsed} ms"; return 1; }
  check_eq "node 3 after the move" "$(manifest_digest 3 scale/move moving)" "$b"
  # a deleted tag disappears from other nodes within the same bound
  check_eq "delete :moving on node 3" "$(req 3 DELETE /v2/scale/move/manifests/moving)" 202
  sleep 1.2
  check_eq "node 1: :moving after the delete" "$(req 1 GET /v2/scale/move/manifests/moving -H "$ACCEPT")" 404
  check_eq "node 2: :moving after the delete" "$(req 2 GET /v2/scale/move/manifests/moving -H "$ACCEPT")" 404
}

check_kill_node_mid_upload() {
  local code loc d_big d_stream acked n part1=$((9 * MIB)) part2=$((20 * MIB)) pid_patch pid_stream
  # acknowledged through node 3: a blob, a config, a manifest and the first 9 MiB of a chunked upload
  rand_file "$T/acked.bin" $((2 * MIB))
  make_config "$T/cfg.json" kill-test
  check_eq "push blob on node 3" "$(push_blob 3 scale/kill "$T/acked.bin")" 201
  check_eq "push config on node 3" "$(push_blob 3 scale/kill "$T/cfg.json")" 201
  make_manifest "$T/m.json" "$T/cfg.json" "$T/acked.bin"
  acked="$(sha "$T/m.json")"
  check_eq "push manifest :acked on node 3" "$(push_manifest 3 scale/kill acked "$T/m.json")" 201
  rand_file "$T/big.bin" $((part1 + part2 + MIB))
  d_big="$(sha "$T/big.bin")"
  check_eq "POST on node 3" "$(req 3 POST /v2/scale/kill/blobs/uploads/ -H 'Content-Length: 0')" 202
  loc="$(hdr location)"; loc="/v2/${loc#*/v2/}"
  head -c "$part1" "$T/big.bin" >"$T/c1"
  check_eq "PATCH 0-$((part1 - 1)) on node 3" "$(req 3 PATCH "$loc" -H "Content-Range: 0-$((part1 - 1))" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/c1")" 202
  loc="$(hdr location)"; loc="/v2/${loc#*/v2/}"
  # in flight when node 3 dies: the next 20 MiB chunk, and a streamed monolithic blob push
  slice "$T/big.bin" "$part1" "$part2" >"$T/c2"
  rcurl -s -o /dev/null --max-time 60 --limit-rate 3M -X PATCH -H "Content-Range: $part1-$((part1 + part2 - 1))" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/c2" "${NODE_URL[3]}$loc" &
  pid_patch=$!
  rand_file "$T/stream.bin" $((16 * MIB))
  d_stream="$(sha "$T/stream.bin")"
  rcurl -s -o /dev/null --max-time 60 --limit-rate 3M -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary "@$T/stream.bin" "${NODE_URL[3]}/v2/scale/kill/blobs/uploads/?digest=$d_stream" &
  pid_stream=$!
  sleep 4
  kill -KILL "${NODE_PID[3]}"
  wait "$pid_patch" 2>/dev/null || true
  wait "$pid_stream" 2>/dev/null || true
  wait "${NODE_PID[3]}" 2>/dev/null || true
  echo "node 3 killed (SIGKILL) with ~12 MiB of each request received"
  for n in 1 2; do
    blob_ok "$n" scale/kill "$T/acked.bin"
    check_eq "node $n manifest :acked" "$(manifest_digest "$n" scale/kill acked)" "$acked"
    blob_absent "$n" scale/kill "$d_stream"
  done
  # the interrupted session: status on node 1, finish on nodes 1 and 2
  check_eq "GET upload status on node 1" "$(req 1 GET "$loc")" 204
  check_eq "acknowledged Range" "$(hdr range)" "0-$((part1 - 1))"
  check_eq "PATCH $part1-$((part1 + part2 - 1)) on node 1" "$(req 1 PATCH "$loc" -H "Content-Range: $part1-$((part1 + part2 - 1))" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/c2")" 202 || { head -c 300 "$T/b"; return 1; }
  loc="$(hdr location)"; loc="/v2/${loc#*/v2/}"
  tail -c "$MIB" "$T/big.bin" >"$T/c3"
  code="$(req 2 PUT "$loc$([[ $loc == *\?* ]] && echo '&' || echo '?')digest=$d_big" -H "Content-Range: $((part1 + part2))-$((part1 + part2 + MIB - 1))" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/c3")"
  check_eq "PUT ?digest= on node 2" "$code" 201 || { head -c 300 "$T/b"; return 1; }
  for n in 1 2; do blob_ok "$n" scale/kill "$T/big.bin"; done
  # node 3 comes back and serves all of it
  node_start 3
  blob_ok 3 scale/kill "$T/big.bin"
  blob_ok 3 scale/kill "$T/acked.bin"
  check_eq "node 3 manifest :acked" "$(manifest_digest 3 scale/kill acked)" "$acked"
  blob_absent 3 scale/kill "$d_stream"
}

# traffic NODE DIR: reads and small writes of $FAULT_REPO in a loop until DIR/stop exists (at
# most 3 minutes); one "op status seconds" line per request in DIR/log.
traffic() {
  local node=$1 dir=$2 i=0 T deadline=$((SECONDS + 180)) base
  T="$dir/t$node"
  mkdir -p "$T"
  base="${NODE_URL[$node]}/v2/$FAULT_REPO"
  while [ ! -e "$dir/stop" ] && [ -d "$dir" ] && [ "$SECONDS" -lt "$deadline" ]; do
    i=$((i + 1))
    printf 'traffic %s %s %s' "$node" "$i" "$RANDOM" >"$T/blob"
    {
      echo "tag-get $(rcurl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 20 -H "$ACCEPT" "$base/manifests/$FAULT_TAG")"
      echo "tags-list $(rcurl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 20 "$base/tags/list")"
      echo "blob-head $(rcurl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 20 --head "$base/blobs/$FAULT_LAYER_DIGEST")"
      echo "blob-push $(rcurl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 20 -X POST \
        -H 'Content-Type: application/octet-stream' --data-binary "@$T/blob" "$base/blobs/uploads/?digest=$(sha "$T/blob")")"
    } >>"$dir/log"
    sleep 0.05
  done
}

# traffic_report DIR: every answer is the operation's success status or 503 (no 500, no other
# error, no timeout), and some requests did see the outage.
traffic_report() {
  local dir=$1 bad
  echo "traffic during the fault ($(wc -l <"$dir/log") requests; status x count; slowest):"
  awk '{c[$1" "$2]++; if ($3 > m[$1]) m[$1] = $3} END {for (k in c) print "  " k " x" c[k]; for (o in m) print "  slowest " o ": " m[o] "s"}' \
    "$dir/log" | sort
  bad="$(awk '!(($1 == "blob-push" && $2 == 201) || ($1 != "blob-push" && $2 == 200) || $2 == 503)' "$dir/log")"
  if [ -n "$bad" ]; then
    echo "unexpected answers (000 = none within 20 s):"
    echo "$bad" | awk '{print "  " $1 " " $2}' | sort | uniq -c
    return 1
  fi
  awk '$2 == 503' "$dir/log" | grep -q . || { echo "no request saw the outage (no 503 at all)"; return 1; }
}

# recover WHAT CMD...: wait up to 30 s for CMD to succeed.
recover() {
  local what=$1 start deadline
  shift
  start="$(now_ms)"
  deadline=$((SECONDS + 30))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "FAIL: no recovery of $what within 30 s"; return 1; }
    sleep 0.2
  done
  echo "ok: $what recovered $(($(now_ms) - start)) ms after the backend came back"
}

tags_list_ok() { [ "$(req "$1" GET "/v2/$FAULT_REPO/tags/list")" = 200 ]; }
blob_get_ok() { [ "$(req "$1" GET "/v2/$FAULT_REPO/blobs/$FAULT_LAYER_DIGEST")" = 200 ]; }

# fault_setup REPO: an image (tag :base) in REPO for the traffic.
fault_setup() {
  FAULT_REPO=$1 FAULT_TAG=base
  rand_file "$T/layer.bin" 300000
  make_config "$T/cfg.json" "$1 base"
  check_eq "push layer" "$(push_blob 1 "$FAULT_REPO" "$T/layer.bin")" 201
  check_eq "push config" "$(push_blob 1 "$FAULT_REPO" "$T/cfg.json")" 201
  make_manifest "$T/base.json" "$T/cfg.json" "$T/layer.bin"
  check_eq "push :base" "$(push_manifest 1 "$FAULT_REPO" base "$T/base.json")" 201
  FAULT_LAYER_DIGEST="$(sha "$T/layer.bin")"
  mkdir -p "$T/traffic"
  # whatever happens, the traffic loops stop with the check
  trap 'touch "$T/traffic/stop"' EXIT
}

# The fault checks go on after a failed probe (ok=1) so the backend is always brought back and
# every symptom is reported.
check_fault_postgres_restart() {
  local n pids=() ok=0
  fault_setup scale/pgfault
  for n in 1 2; do traffic "$n" "$T/traffic" & pids+=($!); done
  sleep 1
  log "stopping PostgreSQL (fast)"
  pg_stop fast
  sleep 1.5 # let the nodes' 1 s caches expire
  rand_file "$T/new.bin" 5000
  REQ_TIMEOUT=20
  # probes while PostgreSQL is down (in parallel): 503 with a generic body
  bg_probe "node 2 GET tags/list" 2 GET "/v2/$FAULT_REPO/tags/list"
  bg_probe "node 3 POST blob upload" 3 POST "/v2/$FAULT_REPO/blobs/uploads/" -H 'Content-Length: 0'
  bg_probe "node 1 monolithic blob push" 1 POST "/v2/$FAULT_REPO/blobs/uploads/?digest=$(sha "$T/new.bin")" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/new.bin"
  bg_probe "node 2 manifest PUT" 2 PUT "/v2/$FAULT_REPO/manifests/other" -H "Content-Type: $MT_MANIFEST" --data-binary "@$T/base.json"
  bg_probe "node 3 GET manifest by tag" 3 GET "/v2/$FAULT_REPO/manifests/base" -H "$ACCEPT"
  bg_probe "node 1 HEAD blob" 1 HEAD "/v2/$FAULT_REPO/blobs/$FAULT_LAYER_DIGEST"
  bg_probe "node 1 GET blob" 1 GET "/v2/$FAULT_REPO/blobs/$FAULT_LAYER_DIGEST"
  bg_probe "node 2 GET catalog" 2 GET /v2/_catalog
  wait_probes || ok=1
  echo "(info) GET /v2/ while the database is down: HTTP $(req 1 GET /v2/)"
  log "starting PostgreSQL"
  pg_start
  recover "node 1 tags/list" tags_list_ok 1 || ok=1
  recover "node 3 tags/list" tags_list_ok 3 || ok=1
  sleep 1
  # a restart right under the traffic: the pools' connections all break at once
  log "restarting PostgreSQL (pg_ctl stop -m fast, start)"
  pg_stop fast
  pg_start
  recover "node 2 tags/list" tags_list_ok 2 || ok=1
  sleep 1
  touch "$T/traffic/stop"
  for n in "${pids[@]}"; do wait "$n"; done
  traffic_report "$T/traffic" || ok=1
  # everything works again, on every node, without restarting berth
  check_eq "blob push after recovery on node 1" "$(push_blob 1 "$FAULT_REPO" "$T/new.bin")" 201 || ok=1
  for n in 1 2 3; do blob_ok "$n" "$FAULT_REPO" "$T/new.bin" || ok=1; done
  check_eq "manifest :other push on node 2" "$(push_manifest 2 "$FAULT_REPO" other "$T/base.json")" 201 || ok=1
  sleep 1.2
  for n in 1 2 3; do
    check_eq "node $n :other" "$(manifest_digest "$n" "$FAULT_REPO" other)" "$(sha "$T/base.json")" || ok=1
  done
  nodes_alive || ok=1
  return "$ok"
}

check_fault_s3_down() {
  local n code loc before crane_pid pids=() ok=0 r=scale/s3fault new_small
  fault_setup "$r"
  before="$(sha "$T/base.json")"
  new_small="$(jq -r .small.manifest "$IMG/b/digests.json")"
  # an upload session with acknowledged data from before the outage
  check_eq "POST upload on node 2" "$(req 2 POST "/v2/$r/blobs/uploads/" -H 'Content-Length: 0')" 202
  loc="$(hdr location)"; loc="/v2/${loc#*/v2/}"
  rand_file "$T/sess.bin" $((2 * MIB))
  head -c "$MIB" "$T/sess.bin" >"$T/s1"
  tail -c "$MIB" "$T/sess.bin" >"$T/s2"
  check_eq "PATCH first MiB on node 2" "$(req 2 PATCH "$loc" -H "Content-Range: 0-$((MIB - 1))" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/s1")" 202
  loc="$(hdr location)"; loc="/v2/${loc#*/v2/}"
  # a new image to try to push during the outage
  rand_file "$T/new-layer.bin" 300000
  make_config "$T/new-cfg.json" s3-during
  make_manifest "$T/new.json" "$T/new-cfg.json" "$T/new-layer.bin"
  for n in 1 3; do traffic "$n" "$T/traffic" & pids+=($!); done
  sleep 1
  log "stopping versitygw"
  s3_stop
  REQ_TIMEOUT=60
  # a real client's push during the outage must fail (it retries for a while: in the background)
  timeout 120 crane push --insecure "$IMG/small-b" "${NODE_HOST[1]}/$r:base" >"$T/crane.log" 2>&1 &
  crane_pid=$!
  bg_probe "node 1 monolithic push of a new blob" 1 POST "/v2/$r/blobs/uploads/?digest=$(sha "$T/new-layer.bin")" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/new-layer.bin"
  bg_probe "node 3 push of the new config" 3 POST "/v2/$r/blobs/uploads/?digest=$(sha "$T/new-cfg.json")" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/new-cfg.json"
  bg_probe "node 2 chunked POST" 2 POST "/v2/$r/blobs/uploads/" -H 'Content-Length: 0'
  bg_probe "node 2 PATCH of the open session" 2 PATCH "$loc" -H "Content-Range: $MIB-$((2 * MIB - 1))" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/s2"
  bg_probe "node 3 GET existing blob" 3 GET "/v2/$r/blobs/$FAULT_LAYER_DIGEST"
  wait_probes || ok=1
  # a manifest over the blobs that failed to push must not be accepted
  code="$(push_manifest 1 "$r" stable "$T/new.json")"
  case "$code" in
    400 | 404 | 503) echo "ok: manifest PUT over the unpushed blobs answered $code" ;;
    *) echo "MISMATCH manifest PUT over unpushed blobs answered $code"; ok=1 ;;
  esac
  echo "(info) during the outage: HEAD existing blob: HTTP $(req 1 HEAD "/v2/$r/blobs/$FAULT_LAYER_DIGEST")," \
    "GET manifest :base: HTTP $(req 2 GET "/v2/$r/manifests/base" -H "$ACCEPT")"
  if wait "$crane_pid"; then
    echo "FAIL: crane push succeeded while S3 was down"; ok=1
  else
    echo "ok: crane push during the outage failed: $(tail -n 1 "$T/crane.log")"
  fi
  log "starting versitygw"
  s3_restart
  recover "node 3 blob GET" blob_get_ok 3 || ok=1
  recover "node 1 blob GET" blob_get_ok 1 || ok=1
  sleep 1
  touch "$T/traffic/stop"
  for n in "${pids[@]}"; do wait "$n"; done
  traffic_report "$T/traffic" || ok=1
  # nothing half-written: the failed blobs and manifests are unknown, :base unchanged, everywhere
  sleep 1.2
  for n in 1 2 3; do
    blob_absent "$n" "$r" "$(sha "$T/new-layer.bin")" || ok=1
    blob_absent "$n" "$r" "$(sha "$T/new-cfg.json")" || ok=1
    check_eq "node $n :base unchanged" "$(manifest_digest "$n" "$r" base)" "$before" || ok=1
    check_eq "node $n new manifest by digest" "$(req "$n" GET "/v2/$r/manifests/$(sha "$T/new.json")" -H "$ACCEPT")" 404 || ok=1
    check_eq "node $n crane's manifest by digest" "$(req "$n" GET "/v2/$r/manifests/$new_small" -H "$ACCEPT")" 404 || ok=1
  done
  check_eq "tags after the outage" "$(req 2 GET "/v2/$r/tags/list" >/dev/null; jq -c .tags "$T/b")" '["base"]' || ok=1
  # the open session survived: status on another node, then finish it on a third
  check_eq "session status on node 3" "$(req 3 GET "$loc")" 204 || ok=1
  check_eq "session Range" "$(hdr range)" "0-$((MIB - 1))" || ok=1
  code="$(req 1 PUT "$loc$([[ $loc == *\?* ]] && echo '&' || echo '?')digest=$(sha "$T/sess.bin")" \
    -H "Content-Range: $MIB-$((2 * MIB - 1))" -H 'Content-Type: application/octet-stream' --data-binary "@$T/s2")"
  check_eq "finish the session on node 1" "$code" 201 || ok=1
  for n in 1 2 3; do blob_ok "$n" "$r" "$T/sess.bin" || ok=1; done
  # pushes work again without restarting berth
  t crane push --insecure "$IMG/small-b" "${NODE_HOST[1]}/$r:base" || ok=1
  sleep 1.2
  for n in 2 3; do
    check_eq "node $n :base after the re-push" "$(t crane digest --insecure "${NODE_HOST[$n]}/$r:base")" "$new_small" || ok=1
  done
  nodes_alive || ok=1
  return "$ok"
}

# ensure_up: PostgreSQL, versitygw and the three nodes run (a failed check may have left one down).
ensure_up() {
  local i bin
  bin="$(pg_bindir)"
  _pg_run "$bin/pg_ctl" -D "$SVC_PG_DATA" status >/dev/null 2>&1 || { log "restarting PostgreSQL"; pg_start; }
  [ ! -f "$WORK/s3.pid" ] || SVC_S3_PID="$(cat "$WORK/s3.pid")"
  kill -0 "$SVC_S3_PID" 2>/dev/null || { log "restarting versitygw"; s3_restart; }
  for i in 1 2 3; do
    [ ! -f "$WORK/node$i.pid" ] || NODE_PID[i]="$(cat "$WORK/node$i.pid")"
    node_alive "$i" || { log "restarting node $i"; node_start "$i"; } || return 1
  done
}

# --- runner --------------------------------------------------------------------------------------
start_all=$SECONDS
log "generating test images in $IMG"
"$ROOT/scripts/make-test-images.sh" "$IMG" --big-mib "${SCALE_BIG_MIB:-24}" >/dev/null
# a second, different small image (for pushes that must not land)
"$ROOT/scripts/make-test-images.sh" "$IMG/b" --big-mib 1 --seed 7 >/dev/null
ln -s b/small "$IMG/small-b"
services_start
record_pid s3 "$SVC_S3_PID"
berth_pg_s3_backend scale-out
for i in 1 2 3; do node_start "$i" || die "node $i did not start"; done
for i in 1 2 3; do
  printf '%s' "$REGISTRY_PASSWORD" | t skopeo login --tls-verify=false -u "$REGISTRY_USER" --password-stdin "${NODE_HOST[$i]}" >/dev/null ||
    die "skopeo login to node $i failed"
  t crane auth login "${NODE_HOST[$i]}" -u "$REGISTRY_USER" -p "$REGISTRY_PASSWORD" >/dev/null 2>&1 ||
    die "crane login to node $i failed"
done
log "setup done in $((SECONDS - start_all))s"

passed=0 failed=0 failed_names=()
for name in "${CHECKS[@]}"; do
  fn="check_${name//-/_}"
  declare -F "$fn" >/dev/null || die "unknown check $name (known: clients-push-pull chunked-across-nodes ...)"
  ensure_up || die "cannot bring the backends and nodes back up"
  T="$WORK/t/$name"; mkdir -p "$T"
  start=$SECONDS
  set +e
  (set -euo pipefail; "$fn") >"$T/log" 2>&1
  rc=$?
  set -e
  if [ "$rc" = 0 ]; then
    echo "PASS $name ($((SECONDS - start))s)"
    [ "${VERBOSE:-0}" = 0 ] || sed 's/^/    | /' "$T/log"
    passed=$((passed + 1))
  else
    echo "FAIL $name ($((SECONDS - start))s, exit $rc)"
    sed 's/^/    | /' "$T/log" | tail -n 40
    for i in 1 2 3; do
      if grep -qE 'ERROR|panicked' "${NODE_LOG[$i]}"; then
        echo "    | node $i log (errors):"; grep -E 'ERROR|panicked' "${NODE_LOG[$i]}" | tail -n 5 | sed 's/^/    |   /'
      fi
    done
    failed=$((failed + 1)); failed_names+=("$name")
  fi
done
# the nodes' logs must not hold panics
for i in 1 2 3; do
  if grep -q 'panicked' "${NODE_LOG[$i]}"; then
    echo "FAIL node-logs: node $i panicked:"; grep -A3 'panicked' "${NODE_LOG[$i]}" | head -n 12 | sed 's/^/    | /'
    failed=$((failed + 1)); failed_names+=(node-logs)
  fi
done
if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $WORK (node logs: $WORK/node*/berth.log)"; fi
[ "$failed" -eq 0 ] || echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
