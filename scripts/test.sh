#!/usr/bin/env bash
# The one command that installs and runs all of berth's tests:
#   1. scripts/install-deps.sh            (skip with SKIP_INSTALL=1)
#   2. cargo build -p berth               (the binary the next steps and the integration tests use)
#   3. services                           a throwaway PostgreSQL + versitygw (S3) for 4, 7 and 8
#                                         (lib.sh services_start; environment in target/services.env)
#   4. cargo test --workspace --all-targets   with BERTH_TEST_POSTGRES_URL / BERTH_TEST_S3_* set, so
#                                         the backend suites run against PostgreSQL and S3 too
#   5. scripts/conformance.sh             (OCI conformance suites against a fresh berth)
#   6. scripts/clients.sh                 (skopeo/podman/crane/oras/regctl round trips)
#      scripts/proxy.sh                   (pull-through cache: distribution upstream, skopeo, crane, containerd)
#      scripts/api-schema.sh              (schemathesis against /api/openapi.json)
#      scripts/import.sh                  (berth import of a real distribution data directory)
#   7. conformance-pg-s3                  the main conformance suite against berth on PostgreSQL + S3
#                                         (BERTH_BACKEND=pg-s3: a fresh database and bucket prefix)
#   8. clients-pg-s3                      scripts/clients.sh against berth on PostgreSQL + S3
#   9. scripts/scale-out.sh               three nodes on one database and bucket; backend faults
#  10. scripts/bench.sh --smoke           when that script exists and has --smoke (else skipped)
# Every step runs even if an earlier one failed (except that 5-10 need the build of 2, and 7-8 the
# services of 3); the exit status is non-zero if any step failed. Everything started is stopped
# on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi

results=() failed=0 passed=0
run_step() {
  local name=$1 start=$SECONDS rc=0
  shift
  echo
  echo "===== $name: $* ====="
  "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    results+=("PASS $name ($((SECONDS - start))s)"); passed=$((passed + 1))
  else
    results+=("FAIL $name (exit $rc, $((SECONDS - start))s)"); failed=$((failed + 1))
  fi
  return "$rc"
}
skip_step() {
  results+=("FAIL $1 (not run: $2)"); failed=$((failed + 1))
}
# A step that does not apply here: reported, not counted.
note_step() {
  results+=("SKIP $1 ($2)")
}

# PostgreSQL + versitygw for the rest of the run (stopped by lib.sh's exit trap).
services_up() {
  # installation problems end in `die`: keep them from ending this script
  (services_install) || return 1
  SERVICES_ENV_FILE="$ROOT/target/services.env" services_start || return 1
  lib_on_exit services_env_remove # the servers end with this script, so does their description
}
services_env_remove() { rm -f "$ROOT/target/services.env"; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  run_step install-deps scripts/install-deps.sh || true
fi
built=1
run_step cargo-build cargo build -p berth || built=0
services=1
run_step services services_up || services=0
[ "$services" = 1 ] || log "PostgreSQL/S3 backend suites will be skipped by cargo test (no services)"
run_step cargo-test cargo test --workspace --all-targets || true
if [ "$built" = 1 ] || [ "$(registry_impl_name)" != berth ]; then
  run_step conformance scripts/conformance.sh || true
  run_step clients scripts/clients.sh || true
  if [ "$(registry_impl_name)" = berth ]; then
    run_step proxy scripts/proxy.sh || true
    run_step api-schema scripts/api-schema.sh || true
    run_step import scripts/import.sh || true
  fi
else
  skip_step conformance "cargo build -p berth failed"
  skip_step clients "cargo build -p berth failed"
fi
if [ "$(registry_impl_name)" != berth ]; then
  note_step pg-s3 "REGISTRY_IMPL=$(registry_impl_name): the PostgreSQL + S3 and scale-out steps test berth only"
elif [ "$built" != 1 ]; then
  for s in conformance-pg-s3 clients-pg-s3 scale-out; do skip_step "$s" "cargo build -p berth failed"; done
else
  if [ "$services" = 1 ]; then
    run_step conformance-pg-s3 env BERTH_BACKEND=pg-s3 CONFORMANCE_OUT="$ROOT/target/conformance-pg-s3" \
      scripts/conformance.sh --suite main || true
    run_step clients-pg-s3 env BERTH_BACKEND=pg-s3 scripts/clients.sh || true
  else
    skip_step conformance-pg-s3 "PostgreSQL/versitygw did not start"
    skip_step clients-pg-s3 "PostgreSQL/versitygw did not start"
  fi
  run_step scale-out scripts/scale-out.sh || true
fi
if [ ! -x scripts/bench.sh ]; then
  note_step bench-smoke "scripts/bench.sh is not there yet"
elif ! grep -q -- '--smoke' scripts/bench.sh; then
  note_step bench-smoke "scripts/bench.sh has no --smoke"
elif [ "$built" != 1 ]; then
  skip_step bench-smoke "cargo build -p berth failed"
else
  # the dev profile reuses this run's build instead of a release build
  run_step bench-smoke scripts/bench.sh --smoke --profile dev || true
fi

echo
echo "===== summary ====="
printf '  %s\n' "${results[@]}"
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
