#!/usr/bin/env bash
# The one command that installs and runs all of berth's tests:
#   1. scripts/install-deps.sh            (skip with SKIP_INSTALL=1)
#   2. cargo build -p berth               (the binary the next steps and the integration tests use)
#   3. cargo test --workspace --all-targets
#   4. scripts/conformance.sh             (OCI conformance suites against a fresh berth)
#   5. scripts/clients.sh                 (skopeo/podman/crane/oras/regctl round trips)
# Every step runs even if an earlier one failed (except that 4-5 need the build of 2); the exit
# status is non-zero if any step failed.
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

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  run_step install-deps scripts/install-deps.sh || true
fi
built=1
run_step cargo-build cargo build -p berth || built=0
run_step cargo-test cargo test --workspace --all-targets || true
if [ "$built" = 1 ] || [ "$(registry_impl_name)" != berth ]; then
  run_step conformance scripts/conformance.sh || true
  run_step clients scripts/clients.sh || true
else
  skip_step conformance "cargo build -p berth failed"
  skip_step clients "cargo build -p berth failed"
fi

echo
echo "===== summary ====="
printf '  %s\n' "${results[@]}"
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
