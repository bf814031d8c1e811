#!/usr/bin/env bash
# Round trips with real registry clients (skopeo, podman, crane, oras, regctl) against a fresh
# registry; every check compares digests. Prints "PASS name" / "FAIL name" per test and ends with
# "N passed, M failed"; exits non-zero on any failure.
#
#   scripts/clients.sh [TEST...]          default: all tests; names: see TESTS below
#
# Registry: berth from $BERTH_BIN by default; REGISTRY_IMPL=distribution or REGISTRY_CMD (see lib.sh);
# BERTH_BACKEND=pg-s3 runs berth on PostgreSQL + S3 (needs BERTH_TEST_POSTGRES_URL, BERTH_TEST_S3_*).
# CLIENT_TIMEOUT (default 300) bounds each client command; BIG_LAYER_MIB (default 100) the big image.
# ORAS_REFERRERS_MODE=tag makes oras-referrers use the referrers tag schema instead of the API.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TESTS=(
  skopeo-small skopeo-multiarch skopeo-big
  podman-small podman-big
  crane-push-pull crane-copy-ls-tag crane-multiarch crane-delete
  oras-artifact oras-referrers
  regctl-copy
)
[ $# -eq 0 ] || TESTS=("$@")

CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-300}"

for tool in skopeo podman crane oras regctl jq curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/install-deps.sh"
done

lib_tmpdir WORK clients
IMG="$WORK/images"

# --- client isolation: no host credentials or config are read or written ---------------------
export DOCKER_CONFIG="$WORK/docker"               # crane, oras
export REGISTRY_AUTH_FILE="$WORK/auth.json"       # podman, skopeo
export CONTAINERS_REGISTRIES_CONF="$WORK/containers/registries.conf"
export CONTAINERS_CONF="$WORK/containers/containers.conf"
export CONTAINERS_STORAGE_CONF="$WORK/containers/storage.conf"
mkdir -p "$DOCKER_CONFIG" "$WORK/containers" "$WORK/regctl-home"
echo '{}' >"$DOCKER_CONFIG/config.json"
echo '{}' >"$REGISTRY_AUTH_FILE"
cat >"$CONTAINERS_REGISTRIES_CONF" <<'EOF'
# only fully qualified references are used; TLS is turned off per command
unqualified-search-registries = []
short-name-mode = "disabled"
EOF

# podman as root, daemonless: own storage/run dirs under $WORK, cgroupfs, file event log.
podman_configure() {
  local driver=$1
  cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "$driver"
runroot = "$WORK/podman/run"
graphroot = "$WORK/podman/storage"
EOF
  cat >"$CONTAINERS_CONF" <<EOF
[containers]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/podman/events.log"
tmp_dir = "$WORK/podman/tmp"
volume_path = "$WORK/podman/volumes"
EOF
}

podman_setup() {
  mkdir -p "$WORK/podman"
  local driver="${PODMAN_STORAGE_DRIVER:-}"
  if [ -z "$driver" ]; then
    podman_configure overlay
    if timeout 60 podman info >"$WORK/podman/info.log" 2>&1; then
      driver=overlay
    else
      driver=vfs
      # remove what overlay left behind before switching drivers
      podman system reset --force >/dev/null 2>&1 || true
      chmod -R u+w "$WORK/podman" 2>/dev/null || true
      rm -rf "$WORK/podman"; mkdir -p "$WORK/podman"
    fi
  fi
  podman_configure "$driver"
  timeout 60 podman info >"$WORK/podman/info.log" 2>&1 || { cat "$WORK/podman/info.log" >&2; return 1; }
  log "podman storage driver: $driver"
}

podman_teardown() {
  [ -f "$CONTAINERS_STORAGE_CONF" ] || return 0
  timeout 60 podman system reset --force >/dev/null 2>&1 || true
}
lib_on_exit podman_teardown

# --- helpers -----------------------------------------------------------------------------------
# t CMD ARGS...: run a client with a time limit (and, for some, isolating options)
t() {
  local cmd=$1
  shift
  case "$cmd" in
    skopeo) timeout "$CLIENT_TIMEOUT" skopeo --insecure-policy "$@" ;;
    regctl) HOME="$WORK/regctl-home" timeout "$CLIENT_TIMEOUT" regctl "$@" ;;
    *) timeout "$CLIENT_TIMEOUT" "$cmd" "$@" ;;
  esac
}


layout_digest() { jq -r '.manifests[0].digest' "$1/index.json"; }
want() { jq -r "$1" "$IMG/digests.json"; }
reg_digest() { t crane digest --insecure "$REGISTRY_HOST/$1"; }

# http_code METHOD PATH [extra curl args...]: status of a request to the registry under test.
http_code() {
  local method=$1 path=$2 m
  shift 2
  if [ "$method" = HEAD ]; then m=(--head); else m=(-X "$method"); fi
  rcurl -s -o /dev/null -w '%{http_code}' --max-time 60 "${m[@]}" "$@" \
    -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "$REGISTRY_URL$path"
}

# --- tests -------------------------------------------------------------------------------------
test_skopeo_small() {
  local ref="$REGISTRY_HOST/clients/skopeo-small:v1" d
  d="$(want .small.manifest)"
  # Explicit --dest-creds/--src-creds here (the other tests use the stored login).
  t skopeo copy --preserve-digests --dest-tls-verify=false ${REGISTRY_USER:+--dest-creds "$REGISTRY_USER:$REGISTRY_PASSWORD"} \
    "oci:$IMG/small" "docker://$ref"
  check_eq "registry digest" "$(reg_digest clients/skopeo-small:v1)" "$d"
  t skopeo copy --preserve-digests --src-tls-verify=false ${REGISTRY_USER:+--src-creds "$REGISTRY_USER:$REGISTRY_PASSWORD"} \
    "docker://$ref" "oci:$T/back:v1"
  check_eq "copied-back manifest digest" "$(layout_digest "$T/back")" "$d"
  check_eq "raw manifest sha256" "sha256:$(t skopeo inspect --raw --tls-verify=false "docker://$ref" | sha256sum | cut -d' ' -f1)" "$d"
  check_eq "config digest" "$(t skopeo inspect --tls-verify=false --config --raw "docker://$ref" | sha256sum | cut -d' ' -f1)" "$(want .small.config | cut -d: -f2)"
}

test_skopeo_multiarch() {
  local ref="$REGISTRY_HOST/clients/skopeo-multi:v1" d p
  d="$(want .multiarch.index)"
  t skopeo copy --all --preserve-digests --dest-tls-verify=false "oci:$IMG/multiarch" "docker://$ref"
  check_eq "index digest" "$(reg_digest clients/skopeo-multi:v1)" "$d"
  for p in linux/amd64 linux/arm64; do
    check_eq "$p manifest digest" "$(t crane digest --insecure --platform "$p" "$ref")" "$(want ".multiarch.platforms[\"$p\"].manifest")"
  done
  t skopeo copy --all --preserve-digests --src-tls-verify=false "docker://$ref" "oci:$T/back:v1"
  check_eq "copied-back index digest" "$(layout_digest "$T/back")" "$d"
}

test_skopeo_big() {
  local ref="$REGISTRY_HOST/clients/skopeo-big:v1" d size blob
  d="$(want .big.manifest)"; blob="$(want .big.big_layer)"; size="$(want .big.big_layer_size)"
  t skopeo copy --preserve-digests --dest-tls-verify=false "oci:$IMG/big" "docker://$ref"
  check_eq "registry digest" "$(reg_digest clients/skopeo-big:v1)" "$d"
  check_eq "big blob HEAD Content-Length" \
    "$(rcurl -sfI --max-time 60 "$REGISTRY_URL/v2/clients/skopeo-big/blobs/$blob" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-length"{print $2}')" "$size"
  t skopeo copy --preserve-digests --src-tls-verify=false "docker://$ref" "oci:$T/back:v1"
  check_eq "copied-back manifest digest" "$(layout_digest "$T/back")" "$d"
  check_eq "copied-back big blob sha256" "sha256:$(sha256sum "$T/back/blobs/sha256/${blob#sha256:}" | cut -d' ' -f1)" "$blob"
}

# podman pull NAME from the registry, check it, push it to another repo, check that.
podman_roundtrip() {
  local name=$1 src="$REGISTRY_HOST/clients/podman-src-$1:v1" dst="$REGISTRY_HOST/clients/podman-$1:v1" d cfg pushed
  d="$(want ".$name.manifest")"; cfg="$(want ".$name.config")"
  t skopeo copy --preserve-digests --dest-tls-verify=false "oci:$IMG/$name" "docker://$src"
  t podman pull --tls-verify=false "$src"
  check_eq "pulled manifest digest" "$(podman image inspect --format '{{.Digest}}' "$src")" "$d"
  check_eq "image ID (config digest)" "sha256:$(podman image inspect --format '{{.Id}}' "$src")" "$cfg"
  t podman tag "$src" "$dst"
  t podman push --tls-verify=false --digestfile "$T/pushed.digest" "$dst"
  pushed="$(cat "$T/pushed.digest")"
  check_eq "pushed digest vs registry" "$(reg_digest "clients/podman-$name:v1")" "$pushed"
  check_eq "pushed config digest" "sha256:$(t crane config --insecure "$dst" | sha256sum | cut -d' ' -f1)" "$cfg"
  t crane validate --insecure --remote "$dst"
  t podman rmi -f "$src" "$dst" >/dev/null
  t podman pull --tls-verify=false "$dst"
  check_eq "re-pulled manifest digest" "$(podman image inspect --format '{{.Digest}}' "$dst")" "$pushed"
  t podman rmi -f "$dst" >/dev/null
}
test_podman_small() { podman_roundtrip small; }
test_podman_big() { podman_roundtrip big; }

test_crane_push_pull() {
  local ref="$REGISTRY_HOST/clients/crane-small:v1" d
  d="$(want .small.manifest)"
  t crane push --insecure "$IMG/small" "$ref"
  check_eq "registry digest" "$(reg_digest clients/crane-small:v1)" "$d"
  t crane validate --insecure --remote "$ref"
  t crane pull --insecure --format oci "$ref" "$T/pulled"
  check_eq "pulled layout digest" "$(layout_digest "$T/pulled")" "$d"
  check_eq "raw manifest sha256" "sha256:$(t crane manifest --insecure "$ref" | sha256sum | cut -d' ' -f1)" "$d"
}

test_crane_copy_ls_tag() {
  local src="$REGISTRY_HOST/clients/crane-src:v1" dst="$REGISTRY_HOST/clients/crane-copy:v1" d tags
  d="$(want .small.manifest)"
  t crane push --insecure "$IMG/small" "$src"
  t crane copy --insecure "$src" "$dst"
  check_eq "copied digest" "$(reg_digest clients/crane-copy:v1)" "$d"
  t crane tag --insecure "$dst" v2
  check_eq "tag v2 digest" "$(reg_digest clients/crane-copy:v2)" "$d"
  tags="$(t crane ls --insecure "$REGISTRY_HOST/clients/crane-copy" | sort | tr '\n' ' ')"
  check_eq "crane ls" "$tags" "v1 v2 "
}

test_crane_multiarch() {
  local ref="$REGISTRY_HOST/clients/crane-multi:v1" d
  d="$(want .multiarch.index)"
  t crane push --insecure "$IMG/multiarch" "$ref"
  check_eq "index digest" "$(reg_digest clients/crane-multi:v1)" "$d"
  t crane copy --insecure "$ref" "$REGISTRY_HOST/clients/crane-multi-copy:v1"
  check_eq "copied index digest" "$(reg_digest clients/crane-multi-copy:v1)" "$d"
  check_eq "arm64 child digest" "$(t crane digest --insecure --platform linux/arm64 "$REGISTRY_HOST/clients/crane-multi-copy:v1")" \
    "$(want '.multiarch.platforms["linux/arm64"].manifest')"
  t crane validate --insecure --remote "$REGISTRY_HOST/clients/crane-multi-copy:v1"
}

test_crane_delete() {
  local repo=clients/crane-delete ref d code
  ref="$REGISTRY_HOST/$repo:v1"
  d="$(want .small.manifest)"
  t crane push --insecure "$IMG/small" "$ref"
  check_eq "digest before delete" "$(reg_digest "$repo:v1")" "$d"
  check_eq "HEAD manifest before delete" "$(http_code HEAD "/v2/$repo/manifests/$d")" 200
  t crane delete --insecure "$REGISTRY_HOST/$repo@$d"
  check_eq "HEAD manifest by digest after delete" "$(http_code HEAD "/v2/$repo/manifests/$d")" 404
  check_eq "GET manifest by digest after delete" "$(http_code GET "/v2/$repo/manifests/$d")" 404
  check_eq "GET manifest by tag after delete" "$(http_code GET "/v2/$repo/manifests/v1")" 404
  if t crane manifest --insecure "$REGISTRY_HOST/$repo@$d" >/dev/null 2>&1; then
    echo "crane manifest still finds the deleted manifest"; return 1
  fi
  code="$(http_code GET "/v2/$repo/blobs/$(want .small.config)")"
  echo "(info) config blob after manifest delete: HTTP $code"
}

test_oras_artifact() {
  local ref="$REGISTRY_HOST/clients/oras-artifact:v1" at=application/vnd.berth.test.artifact.v1 d
  mkdir -p "$T/in" "$T/out"
  printf 'hello from berth client tests\n' >"$T/in/hello.txt"
  head -c 300000 /dev/urandom >"$T/in/data.bin"
  (cd "$T/in" && t oras push --plain-http --artifact-type "$at" --format json "$ref" \
    hello.txt:text/plain data.bin:application/octet-stream) >"$T/push.json"
  d="$(jq -r .digest "$T/push.json")"
  check_eq "registry digest" "$(reg_digest clients/oras-artifact:v1)" "$d"
  check_eq "artifactType" "$(t oras manifest fetch --plain-http "$ref" | jq -r .artifactType)" "$at"
  t oras pull --plain-http -o "$T/out" "$ref"
  cmp "$T/in/hello.txt" "$T/out/hello.txt"
  cmp "$T/in/data.bin" "$T/out/data.bin"
  echo "ok: pulled files identical"
}

# ORAS_REFERRERS_MODE=api (default: the referrers API only) or tag (the sha256-<digest> tag fallback).
test_oras_referrers() {
  local subject="$REGISTRY_HOST/clients/oras-subject:v1" at=application/vnd.berth.test.signature.v1 d ref_d
  local mode="v1.1-referrers-${ORAS_REFERRERS_MODE:-api}"
  d="$(want .small.manifest)"
  t crane push --insecure "$IMG/small" "$subject"
  mkdir -p "$T/in"
  printf 'signature of %s\n' "$d" >"$T/in/sig.txt"
  (cd "$T/in" && t oras attach --plain-http --distribution-spec "$mode" --artifact-type "$at" \
    --annotation "org.berth.test=referrer" --format json "$subject" sig.txt:text/plain) >"$T/attach.json"
  ref_d="$(jq -r .digest "$T/attach.json")"
  echo "referrer digest: $ref_d"
  t oras discover --plain-http --distribution-spec "$mode" --format json "$subject" >"$T/discover.json"
  cat "$T/discover.json"
  check_eq "discovered referrer (artifactType $at)" \
    "$(jq -r --arg at "$at" '[.. | objects | select(.artifactType? == $at) | .digest] | first // "none"' "$T/discover.json")" "$ref_d"
  t oras discover --plain-http --distribution-spec "$mode" --format json --artifact-type "$at" "$subject" >"$T/discover-filtered.json"
  check_eq "discover --artifact-type" \
    "$(jq -r --arg at "$at" '[.. | objects | select(.artifactType? == $at) | .digest] | first // "none"' "$T/discover-filtered.json")" "$ref_d"
  [ "$mode" = v1.1-referrers-api ] || return 0
  # the same through the API directly
  rcurl -sfS --max-time 60 -D "$T/referrers.hdr" -o "$T/referrers.json" "$REGISTRY_URL/v2/clients/oras-subject/referrers/$d"
  check_eq "referrers Content-Type" \
    "$(tr -d '\r' <"$T/referrers.hdr" | awk -F': ' 'tolower($1)=="content-type"{print $2}')" "application/vnd.oci.image.index.v1+json"
  check_eq "referrers API entry" \
    "$(jq -r --arg at "$at" '[.manifests[] | select(.artifactType == $at) | .digest] | first // "none"' "$T/referrers.json")" "$ref_d"
}

test_regctl_copy() {
  local d ref="$REGISTRY_HOST/clients/regctl-multi:v1" dst="$REGISTRY_HOST/clients/regctl-copy:v1"
  d="$(want .multiarch.index)"
  t regctl registry set --tls disabled "$REGISTRY_HOST"
  t regctl image copy "ocidir://$IMG/multiarch:latest" "$ref"
  check_eq "pushed index digest" "$(t regctl image digest "$ref")" "$d"
  t regctl image copy "$ref" "$dst"
  check_eq "copied index digest" "$(t regctl image digest "$dst")" "$d"
  check_eq "tag ls" "$(t regctl tag ls "$REGISTRY_HOST/clients/regctl-copy" | tr '\n' ' ')" "v1 "
  check_eq "manifest get sha256" "sha256:$(t regctl manifest get --format raw-body "$dst" | sha256sum | cut -d' ' -f1)" "$d"
  check_eq "arm64 manifest digest" "$(t regctl image digest --platform linux/arm64 "$dst")" \
    "$(want '.multiarch.platforms["linux/arm64"].manifest')"
}

# --- runner ------------------------------------------------------------------------------------
log "generating test images in $IMG"
"$ROOT/scripts/make-test-images.sh" "$IMG" >/dev/null
registry_start clients || die "could not start the registry"
if printf '%s\n' "${TESTS[@]}" | grep -q '^podman-'; then
  podman_setup || die "podman cannot run here (see above)"
fi

# With auth on, every client logs in the way its users would; the stored credentials are then
# used by every test (podman and skopeo share $REGISTRY_AUTH_FILE, crane and oras $DOCKER_CONFIG).
clients_login() {
  [ -n "${REGISTRY_USER:-}" ] || return 0
  local pw="$REGISTRY_PASSWORD" u="$REGISTRY_USER"
  # Wrong credentials must be refused before the right ones are stored.
  if printf 'wrong-password' | t skopeo login --tls-verify=false -u "$u" --password-stdin "$REGISTRY_HOST" >/dev/null 2>&1; then
    die "skopeo login accepted a wrong password"
  fi
  if command -v podman >/dev/null && [ -f "$CONTAINERS_STORAGE_CONF" ]; then
    printf '%s' "$pw" | t podman login --tls-verify=false -u "$u" --password-stdin "$REGISTRY_HOST"
  else
    printf '%s' "$pw" | t skopeo login --tls-verify=false -u "$u" --password-stdin "$REGISTRY_HOST"
  fi
  t crane auth login "$REGISTRY_HOST" -u "$u" -p "$pw"
  printf '%s' "$pw" | t oras login --plain-http -u "$u" --password-stdin "$REGISTRY_HOST"
  t regctl registry set --tls disabled "$REGISTRY_HOST"
  printf '%s' "$pw" | t regctl registry login -u "$u" --pass-stdin "$REGISTRY_HOST"
  log "clients logged in to $REGISTRY_HOST as $u (podman/skopeo, crane, oras, regctl)"
}
clients_login || die "client login failed"

passed=0 failed=0 failed_names=()
for name in "${TESTS[@]}"; do
  fn="test_${name//-/_}"
  declare -F "$fn" >/dev/null || die "unknown test $name (known: ${TESTS[*]})"
  T="$WORK/t/$name"; mkdir -p "$T"
  start=$SECONDS
  set +e
  (set -euo pipefail; "$fn") >"$T/log" 2>&1
  rc=$?
  set -e
  if [ "$rc" = 0 ] && registry_alive; then
    echo "PASS $name ($((SECONDS - start))s)"
    passed=$((passed + 1))
  else
    echo "FAIL $name ($((SECONDS - start))s, exit $rc)"
    sed 's/^/    | /' "$T/log" | tail -n 25
    registry_alive || { echo "    | registry process is gone"; registry_log_tail 20; }
    failed=$((failed + 1)); failed_names+=("$name")
  fi
done

if [ "$failed" -gt 0 ]; then
  echo "failed: ${failed_names[*]} (registry: $(registry_label))"
  registry_log_tail 15
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
