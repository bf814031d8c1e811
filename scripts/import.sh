#!/usr/bin/env bash
# `berth import` from a real CNCF distribution data directory:
#   1. CNCF distribution 2.8.2 (Debian's docker-registry) on 127.0.0.1, loaded with skopeo:
#      generated images (a small one under two tags, a multi-arch index with two platforms, one
#      with a bigger random layer in a nested repository name), then stopped;
#   2. `berth import --from <its rootdirectory>` into a fresh berth data dir, then again (resume:
#      nothing left to do);
#   3. berth serves the result: every tag's digest equals what distribution had, and skopeo copies
#      every image out (it verifies every blob digest);
#   4. a corrupted blob file in a copy of the directory: the import reports it, fails, and that
#      blob is not visible in berth.
# Prints "PASS name" / "FAIL name" and "N passed, M failed"; exits non-zero on a failure.
#
# Env: BERTH_BIN (default target/debug/berth), BIG_LAYER_MIB (8), KEEP_TMP=1 (keep dirs).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

BERTH_BIN="${BERTH_BIN:-$ROOT/target/debug/berth}"
[ -x "$BERTH_BIN" ] || die "berth binary not found at $BERTH_BIN (cargo build -p berth)"
for tool in skopeo crane jq python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/install-deps.sh)"
done
ensure_distribution

lib_tmpdir WORK import
IMG="$WORK/images"
passed=0 failed=0
result() {
  if [ "$2" = 0 ]; then echo "PASS $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi
}

# --- 1. a distribution data directory made by distribution itself ---------------------------
python3 "$ROOT/scripts/make-test-images.py" "$IMG" --big-mib "${BIG_LAYER_MIB:-8}" --seed "import-$$" >/dev/null
REGISTRY_IMPL=distribution registry_start dist
DIST_DATA="$REGISTRY_DATA"
declare -A WANT=(
  [library/small:v1]="$(jq -r .small.manifest "$IMG/digests.json")"
  [library/small:v2]="$(jq -r .small.manifest "$IMG/digests.json")"
  [team/multi:latest]="$(jq -r .multiarch.index "$IMG/digests.json")"
  [deep/nested/repo/big:1.0]="$(jq -r .big.manifest "$IMG/digests.json")"
)
push() { skopeo copy --all --preserve-digests --dest-tls-verify=false -q "oci:$IMG/$1" "docker://$REGISTRY_HOST/$2"; }
push small library/small:v1
push small library/small:v2
push multiarch team/multi:latest
push big deep/nested/repo/big:1.0
for ref in "${!WANT[@]}"; do
  got="$(crane digest --insecure "$REGISTRY_HOST/$ref")"
  [ "$got" = "${WANT[$ref]}" ] || die "distribution serves $ref as $got, not ${WANT[$ref]}"
done
registry_stop
log "distribution data dir ready: $DIST_DATA"

# --- 2. import, twice -------------------------------------------------------------------------
BERTH_DATA="$WORK/berth"
rc=0
"$BERTH_BIN" import --from "$DIST_DATA" --data-dir "$BERTH_DATA" >"$WORK/import1.log" 2>&1 || rc=$?
cat "$WORK/import1.log" | tail -5
summary="$(tail -1 "$WORK/import1.log")"
ok=1
[ "$rc" = 0 ] || ok=0
grep -q '3 repositories' <<<"$summary" || ok=0
grep -q ' 0 already present, .* 0 already present' <<<"$summary" || ok=0
result import "$((1 - ok))"

rc=0
"$BERTH_BIN" import --from "$DIST_DATA" --data-dir "$BERTH_DATA" >"$WORK/import2.log" 2>&1 || rc=$?
summary="$(tail -1 "$WORK/import2.log")"
echo "$summary"
ok=1
[ "$rc" = 0 ] || ok=0
grep -q ' 0 blobs imported' <<<"$summary" || ok=0
grep -q ' 0 manifests imported' <<<"$summary" || ok=0
result import-again-is-a-no-op "$((1 - ok))"

# --- 3. berth serves what distribution had ---------------------------------------------------
REGISTRY_IMPL=custom REGISTRY_CMD="env BERTH_AUTH__MODE=none $BERTH_BIN serve --listen {addr} --data-dir $BERTH_DATA" \
  registry_start berth
ok=1
for ref in "${!WANT[@]}"; do
  got="$(crane digest --insecure "$REGISTRY_HOST/$ref" 2>&1)" || true
  if [ "$got" != "${WANT[$ref]}" ]; then
    log "berth serves $ref as $got, expected ${WANT[$ref]}"
    ok=0
  fi
done
result digests-match "$((1 - ok))"
ok=1
mkdir -p "$WORK/pulled"
for ref in "${!WANT[@]}"; do
  out="$WORK/pulled/${ref//[:\/]/_}"
  if ! skopeo copy --all --src-tls-verify=false -q "docker://$REGISTRY_HOST/$ref" "oci:$out:x" >"$WORK/pull.log" 2>&1; then
    log "skopeo could not pull $ref from berth:"; cat "$WORK/pull.log"
    ok=0
  fi
done
[ "$(curl -s "$REGISTRY_URL/v2/_catalog" | jq -c .repositories)" = \
  '["deep/nested/repo/big","library/small","team/multi"]' ] || { log "catalog: $(curl -s "$REGISTRY_URL/v2/_catalog")"; ok=0; }
[ "$(curl -s "$REGISTRY_URL/v2/library/small/tags/list" | jq -c .tags)" = '["v1","v2"]' ] || ok=0
result pull-everything "$((1 - ok))"
registry_stop

# --- 4. a corrupt blob is refused, reported, and never visible ------------------------------
cp -a "$DIST_DATA" "$WORK/corrupt"
big_layer="$(jq -r .big.big_layer "$IMG/digests.json")"
hex="${big_layer#sha256:}"
file="$WORK/corrupt/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
printf 'X' | dd of="$file" bs=1 seek=1000 conv=notrunc status=none
rc=0
"$BERTH_BIN" import --from "$WORK/corrupt" --data-dir "$WORK/berth-corrupt" >"$WORK/import3.log" 2>&1 || rc=$?
tail -4 "$WORK/import3.log"
ok=1
[ "$rc" != 0 ] || ok=0
grep -q "$big_layer" "$WORK/import3.log" || ok=0
grep -q 'problems' "$WORK/import3.log" || ok=0
REGISTRY_IMPL=custom REGISTRY_CMD="env BERTH_AUTH__MODE=none $BERTH_BIN serve --listen {addr} --data-dir $WORK/berth-corrupt" \
  registry_start berth-corrupt
[ "$(curl -s -o /dev/null -w '%{http_code}' "$REGISTRY_URL/v2/deep/nested/repo/big/blobs/$big_layer")" = 404 ] || ok=0
[ "$(crane digest --insecure "$REGISTRY_HOST/library/small:v1")" = "${WANT[library/small:v1]}" ] || ok=0
registry_stop
result corrupt-blob-refused "$((1 - ok))"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
