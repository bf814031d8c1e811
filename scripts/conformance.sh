#!/usr/bin/env bash
# Build (once, cached) and run the OCI distribution-spec conformance suites against a fresh registry.
#
#   scripts/conformance.sh                 build if needed, run both suites
#   scripts/conformance.sh --build-only    only build/cache the suites (used by install-deps.sh)
#   scripts/conformance.sh --suite v1.1.1  run one suite (v1.1.1 | main)
#
# Registry: berth from $BERTH_BIN by default; REGISTRY_IMPL=distribution or REGISTRY_CMD (see lib.sh);
# BERTH_BACKEND=pg-s3 runs berth on PostgreSQL + S3 (needs BERTH_TEST_POSTGRES_URL, BERTH_TEST_S3_*).
# Reports: target/conformance/v1.1.1/{junit.xml,report.html,output.log}
#          target/conformance/main/{junit.xml,report.html,results.yaml,output.log}
# Exit status: non-zero if a suite that ran had any failure, or the main suite could not be built.
#
# Suite sources come from the Go module proxy (module github.com/opencontainers/distribution-spec/conformance):
#   v1.1.1  commit a139cc423184af6078077b9b7ee336eddbd03f8f (released Ginkgo suite, `go test -c`)
#   main    commit 967efdc079b91785ad18c77cc4f8991a47feefbf (redesigned suite, `go build`)
# A proxy that cannot resolve a commit (a mirror serving only listed versions) gets, for main, the
# fallback pseudo-version OCI_CONFORMANCE_MAIN_FALLBACK; for v1.1.1 there is no such fallback: point
# OCI_CONFORMANCE_V111_SRC at a copy of distribution-spec's conformance/ dir at v1.1.1 (or vendor it
# as third_party/distribution-spec-conformance-v1.1.1/), else the suite is reported as NOT RUN
# (which fails the script only when CONFORMANCE_REQUIRE_ALL=1).
# Each built binary is cached under ${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools/.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONF_MODULE=github.com/opencontainers/distribution-spec/conformance
V111_COMMIT="${OCI_CONFORMANCE_V111_COMMIT:-a139cc423184af6078077b9b7ee336eddbd03f8f}"
MAIN_COMMIT="${OCI_CONFORMANCE_MAIN_COMMIT:-967efdc079b91785ad18c77cc4f8991a47feefbf}"
# Newest (and only) pseudo-version the module proxy mirror here served on 2026-11-23; later than 967efdc.
MAIN_FALLBACK="${OCI_CONFORMANCE_MAIN_FALLBACK:-v0.0.0-20260831232431-97274622c111}"
# Local source of the v1.1.1 suite: OCI_CONFORMANCE_V111_SRC, else third_party/ if the repo vendors it.
V111_SRC="${OCI_CONFORMANCE_V111_SRC:-}"
if [ -z "$V111_SRC" ] && [ -f "$ROOT/third_party/distribution-spec-conformance-v1.1.1/00_conformance_suite_test.go" ]; then
  V111_SRC="$ROOT/third_party/distribution-spec-conformance-v1.1.1"
fi
SUITE_TIMEOUT="${CONFORMANCE_TIMEOUT:-1800}"
OUT_BASE="${CONFORMANCE_OUT:-$ROOT/target/conformance}"

build_only=0
suites=(v1.1.1 main)
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) build_only=1 ;;
    --suite) shift; suites=("${1:?--suite needs v1.1.1 or main}") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done

command -v go >/dev/null 2>&1 || die "go not found (Go >= 1.24 needed to build the suites)"

# go_fetch MODULE@REF: sets FETCH_VER and FETCH_DIR (the module's source in the module cache).
go_fetch() {
  local tmp json
  lib_tmpdir tmp gofetch
  if ! json="$(cd "$tmp" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$1" 2>"$tmp/err")"; then
    { jq -r '.Error // empty' <<<"$json" 2>/dev/null; cat "$tmp/err"; } | sed 's/^/    /' >&2
    return 1
  fi
  FETCH_VER="$(jq -r .Version <<<"$json")"
  FETCH_DIR="$(jq -r .Dir <<<"$json")"
  [ -d "$FETCH_DIR" ]
}

# build_suite KIND SRC_DIR OUT_BIN VERSION_LABEL
build_suite() {
  local kind=$1 src=$2 out=$3 label=$4 work start
  lib_tmpdir work "build-$kind"
  cp -R "$src/." "$work/"
  chmod -R u+w "$work"
  start=$SECONDS
  log "building $kind conformance suite ($label)"
  mkdir -p "$(dirname "$out")"
  if [ "$kind" = v1.1.1 ]; then
    (cd "$work" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" \
      go test -c -o "$out.tmp" -ldflags "-X '$CONF_MODULE.Version=$label'" . >&2)
  else
    (cd "$work" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" \
      go build -o "$out.tmp" -ldflags "-X 'main.Version=$label'" . >&2)
  fi
  printf '%s\n' "$label" >"$(dirname "$out")/VERSION"
  mv "$out.tmp" "$out"
  log "built $kind suite in $((SECONDS - start))s -> $out"
}

# ensure_suite KIND: sets SUITE_BIN to the built binary, building it if not cached.
ensure_suite() {
  local kind=$1 cache="$BERTH_TOOLS_CACHE/conformance" key fb
  SUITE_BIN=""
  case "$kind" in
    v1.1.1)
      if [ -n "$V111_SRC" ]; then
        [ -f "$V111_SRC/00_conformance_suite_test.go" ] ||
          die "$V111_SRC is not distribution-spec's conformance/ dir at v1.1.1"
        # cache key: the content of the sources
        key="local-$(cd "$V111_SRC" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
          sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)"
        SUITE_BIN="$cache/v1.1.1-$key/conformance.test"
        [ -x "$SUITE_BIN" ] || build_suite v1.1.1 "$V111_SRC" "$SUITE_BIN" "$V111_COMMIT (source from $V111_SRC)"
        return 0
      fi
      SUITE_BIN="$cache/v1.1.1-${V111_COMMIT:0:12}/conformance.test"
      [ -x "$SUITE_BIN" ] && return 0
      log "fetching $CONF_MODULE@$V111_COMMIT through the Go module proxy"
      if ! go_fetch "$CONF_MODULE@$V111_COMMIT"; then
        log "the v1.1.1 suite's source is not available through the module proxy (commit $V111_COMMIT)."
        log "  To run it, set OCI_CONFORMANCE_V111_SRC to a checkout of distribution-spec's conformance/ at v1.1.1."
        SUITE_BIN=""; return 1
      fi
      [ -f "$FETCH_DIR/00_conformance_suite_test.go" ] || {
        log "$CONF_MODULE@$FETCH_VER is not the Ginkgo (v1.1.1) suite"; SUITE_BIN=""; return 1; }
      build_suite v1.1.1 "$FETCH_DIR" "$SUITE_BIN" "$V111_COMMIT ($FETCH_VER)"
      ;;
    main)
      SUITE_BIN="$cache/main-${MAIN_COMMIT:0:12}/conformance"
      [ -x "$SUITE_BIN" ] && return 0
      fb="$cache/main-fallback-$MAIN_FALLBACK/conformance"
      if [ -x "$fb" ]; then
        log "main suite: using the cached fallback $MAIN_FALLBACK (commit $MAIN_COMMIT was not served when it was built)"
        SUITE_BIN="$fb"; return 0
      fi
      log "fetching $CONF_MODULE@$MAIN_COMMIT through the Go module proxy"
      if go_fetch "$CONF_MODULE@$MAIN_COMMIT"; then
        build_suite main "$FETCH_DIR" "$SUITE_BIN" "$MAIN_COMMIT ($FETCH_VER)"
      else
        log "commit $MAIN_COMMIT is not served by the module proxy; falling back to $CONF_MODULE@$MAIN_FALLBACK"
        go_fetch "$CONF_MODULE@$MAIN_FALLBACK" || { log "main suite source not available"; SUITE_BIN=""; return 1; }
        SUITE_BIN="$fb"
        build_suite main "$FETCH_DIR" "$SUITE_BIN" "$FETCH_VER (fallback for $MAIN_COMMIT)"
      fi
      ;;
  esac
}

declare -A BIN=() STATUS=()
for s in "${suites[@]}"; do
  case "$s" in v1.1.1|main) ;; *) die "unknown suite $s (v1.1.1|main)" ;; esac
  if ensure_suite "$s"; then
    BIN[$s]="$SUITE_BIN"
  else
    STATUS[$s]="NOT RUN (suite source could not be obtained or built)"
  fi
done

if [ "$build_only" = 1 ]; then
  for s in "${suites[@]}"; do
    if [ -n "${BIN[$s]:-}" ]; then
      echo "conformance suite $s: ${BIN[$s]} ($(cat "$(dirname "${BIN[$s]}")/VERSION"))"
    else
      echo "conformance suite $s: ${STATUS[$s]}"
    fi
  done
  # Not having v1.1.1 is a known limitation of some proxies; do not fail dependency installation on it.
  [ -n "${BIN[main]:-}" ] || [[ " ${suites[*]} " != *" main "* ]] || exit 1
  exit 0
fi

run_v111() {
  local out=$1 rc=0
  (cd "$out" && OCI_ROOT_URL="$REGISTRY_URL" OCI_USERNAME="${REGISTRY_USER:-}" OCI_PASSWORD="${REGISTRY_PASSWORD:-}" \
  OCI_NAMESPACE="conformance/repo1" \
  OCI_CROSSMOUNT_NAMESPACE="conformance/repo2" \
  OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 \
  OCI_AUTOMATIC_CROSSMOUNT=1 OCI_HIDE_SKIPPED_WORKFLOWS=0 OCI_DEBUG=0 \
  OCI_REPORT_DIR="$out" \
    timeout "$SUITE_TIMEOUT" "${BIN[v1.1.1]}" --ginkgo.no-color >"$out/output.log" 2>&1 </dev/null) || rc=$?
  return "$rc"
}

run_main() {
  local out=$1 rc=0 v
  local -a toggles=()
  for v in PING PULL PUSH \
    BLOBS_ATOMIC BLOBS_DELETE BLOBS_DIGEST_HEADER BLOBS_MOUNT_ANONYMOUS BLOBS_UPLOAD_CANCEL \
    MANIFESTS_ATOMIC MANIFESTS_DELETE MANIFESTS_DIGEST_HEADER MANIFESTS_TAG_PARAM \
    TAGS_ATOMIC TAGS_DELETE TAGS_LIST REFERRER; do
    toggles+=("OCI_API_$v=true")
  done
  for v in IMAGE INDEX INDEX_LIST ARTIFACT SUBJECT SUBJECT_MISSING ARTIFACT_LIST SUBJECT_LIST \
    DATA_FIELD NONDISTRIBUTABLE CUSTOM_FIELDS NO_LAYERS EMPTY_BLOB SHA512; do
    toggles+=("OCI_DATA_$v=true")
  done
  toggles+=("OCI_DATA_SPARSE=false")
  # Run from $out so no stray oci-conformance.yaml is picked up; legacy OCI_* vars are cleared.
  (cd "$out" && env -u OCI_ROOT_URL -u OCI_NAMESPACE -u OCI_CROSSMOUNT_NAMESPACE -u OCI_TEST_PULL \
      -u OCI_TEST_PUSH -u OCI_TEST_CONTENT_DISCOVERY -u OCI_TEST_CONTENT_MANAGEMENT -u OCI_DEBUG \
      -u OCI_CONFIGURATION \
      OCI_REGISTRY="$REGISTRY_HOST" OCI_TLS=disabled OCI_VERSION=dev \
      OCI_USERNAME="${REGISTRY_USER:-}" OCI_PASSWORD="${REGISTRY_PASSWORD:-}" \
      OCI_REPO1="conformance/repo1" OCI_REPO2="conformance/repo2" \
      OCI_LOG="${OCI_LOG:-warn}" OCI_RESULTS_DIR="$out" "${toggles[@]}" \
      timeout "$SUITE_TIMEOUT" "${BIN[main]}" >"$out/output.log" 2>&1 </dev/null) || rc=$?
  return "$rc"
}

overall=0
for s in "${suites[@]}"; do
  [ -n "${BIN[$s]:-}" ] || continue
  out="$OUT_BASE/$s"
  rm -rf "$out"; mkdir -p "$out"
  log "== $s suite ($(cat "$(dirname "${BIN[$s]}")/VERSION")) against $(registry_label)"
  if ! registry_start "conformance-$s"; then
    STATUS[$s]="FAILED (registry did not start)"; overall=1; continue
  fi
  start=$SECONDS rc=0
  if [ "$s" = v1.1.1 ]; then run_v111 "$out" || rc=$?; else run_main "$out" || rc=$?; fi
  cp "$REGISTRY_LOG" "$out/registry.log" 2>/dev/null || true
  alive=1; registry_alive || alive=0
  registry_stop
  log "$s suite exited $rc after $((SECONDS - start))s; output in $out/output.log"
  [ "$rc" = 124 ] && log "$s suite TIMED OUT after ${SUITE_TIMEOUT}s"
  [ "$alive" = 1 ] || { log "registry process died during the $s suite"; registry_log_tail 40; }
  fails=0
  if [ -f "$out/junit.xml" ]; then
    echo
    echo "=== $s conformance summary ($(registry_label); exit code $rc) ==="
    python3 "$ROOT/scripts/junit-summary.py" --failures 60 "$out/junit.xml" || fails=$?
  else
    echo "=== $s: no junit.xml written (exit code $rc); tail of output:"
    tail -n 30 "$out/output.log"
    fails=1
  fi
  if [ "$rc" != 0 ] || [ "$fails" != 0 ] || [ "$alive" != 1 ]; then
    STATUS[$s]="FAILED (exit $rc)"; overall=1
  else
    STATUS[$s]="PASSED"
  fi
done

echo
echo "=== conformance results ($(registry_label)) ==="
for s in "${suites[@]}"; do
  echo "  $s: ${STATUS[$s]}"
  if [[ "${STATUS[$s]}" == NOT\ RUN* ]] && { [ "$s" = main ] || [ "${CONFORMANCE_REQUIRE_ALL:-0}" = 1 ]; }; then
    overall=1
  fi
done
exit "$overall"
