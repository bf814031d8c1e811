#!/usr/bin/env bash
# Schemathesis (PyPI) against berth's own OpenAPI document (/api/openapi.json), with berth started
# here on 127.0.0.1: every documented management operation is called with generated valid and
# invalid input, as an admin (login JWT). Checks: no 5xx, status codes, content types and bodies
# match the document. Writes a JUnit report and a summary to target/api-schema/.
#
#   scripts/api-schema.sh
#
# Env: BERTH_BIN (default target/debug/berth), API_SCHEMA_MAX_EXAMPLES (per operation, 30),
#      API_SCHEMA_VENV (default ${XDG_CACHE_HOME:-~/.cache}/berth-tools/schemathesis-venv),
#      KEEP_TMP=1 (keep the data dir).
#
# Operations that would end the run's own session or lock it out are left out: logout, the
# system lock, user updates and deletes (with a second admin created by the run, they could
# disable or delete the one it is logged in as), the 2FA changes, the admin allow-list. The integration tests
# cover them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

SCHEMATHESIS_VERSION=4.32.5
VENV="${API_SCHEMA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools/schemathesis-venv}"
OUT="$ROOT/target/api-schema"
BERTH_BIN="${BERTH_BIN:-$ROOT/target/debug/berth}"
[ -x "$BERTH_BIN" ] || die "berth binary not found at $BERTH_BIN (cargo build -p berth)"

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  log "pip install schemathesis==$SCHEMATHESIS_VERSION"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

lib_tmpdir dir api-schema
password="pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
port="$(free_port)"
url="http://127.0.0.1:$port"
# Rate limits and the failed-login rules off: the run makes thousands of requests from one
# address, many of them deliberately wrong logins.
setsid env BERTH_AUTH__MODE=token BERTH_ADMIN_PASSWORD="$password" BERTH_RATE_LIMIT__ENABLED=false \
  BERTH_AUTH__CAPTCHA_AFTER=1000000 BERTH_AUTH__LOCK_AFTER_IP_FAILURES=1000000 \
  BERTH_AUTH__ACCOUNT_LOCK_AFTER=1000000 \
  "$BERTH_BIN" serve --listen "127.0.0.1:$port" --data-dir "$dir/data" >"$dir/berth.log" 2>&1 </dev/null &
_LIB_PIDS+=("$!")
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && break
  sleep 0.1
done
token="$(curl -sf -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" "$url/api/v1/auth/login" | jq -r .token)"
[ -n "$token" ] && [ "$token" != null ] || { tail -20 "$dir/berth.log"; die "login failed"; }

mkdir -p "$OUT"
rc=0
"$VENV/bin/st" run "$url/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${API_SCHEMA_MAX_EXAMPLES:-30}" \
  --exclude-operation-id logout --exclude-operation-id lock --exclude-operation-id updateUser \
  --exclude-operation-id deleteUser \
  --exclude-operation-id twoFactorSetup --exclude-operation-id twoFactorEnable \
  --exclude-operation-id twoFactorDisable --exclude-operation-id putAllowlist \
  --request-timeout 30 --workers 2 --seed 42 \
  --report junit --report-dir "$OUT" \
  --no-color >"$OUT/schemathesis.log" 2>&1 || rc=$?
tail -40 "$OUT/schemathesis.log"
if grep -qE ' 5[0-9][0-9] ' "$dir/berth.log"; then
  log "berth logged 5xx answers:"
  grep -E ' 5[0-9][0-9] ' "$dir/berth.log" | head -20
fi
[ "$rc" = 0 ] || { log "schemathesis failed (exit $rc); full output: $OUT/schemathesis.log"; exit "$rc"; }
log "schemathesis passed"
