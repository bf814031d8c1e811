#!/usr/bin/env bash
# PostgreSQL + an S3-compatible server (versitygw) for berth's scale-out tests, on loopback.
#
#   scripts/services.sh start [ENV_FILE]   install if missing (apt postgresql; go install versitygw),
#                                          start both in the background and write ENV_FILE
#                                          (default target/services.env); `stop` ends them
#   scripts/services.sh stop [ENV_FILE]    stop what `start` started and delete its data
#   scripts/services.sh run CMD [ARGS...]  start both, run CMD with the variables set, stop both
#                                          on exit (whatever CMD's outcome); exits with CMD's status
#   scripts/services.sh install            only install what is missing
#
# The variables (see lib.sh, "Backing services"): BERTH_TEST_POSTGRES_URL, BERTH_TEST_S3_ENDPOINT,
# BERTH_TEST_S3_BUCKET, BERTH_TEST_S3_ACCESS_KEY, BERTH_TEST_S3_SECRET_KEY (read by the backend test
# suites, and by lib.sh with BERTH_BACKEND=pg-s3), BERTH_SERVICES_DATABASE_URL and
# BERTH_SERVICES_STORAGE_URL (a database and a bucket prefix to run one berth on by hand).
#
#   scripts/services.sh start && . target/services.env
#   cargo test -p berth-meta -p berth-storage
#   BERTH_BACKEND=pg-s3 scripts/clients.sh crane-push-pull
#   scripts/services.sh stop
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd="${1:-}"
[ $# -eq 0 ] || shift
default_env="$ROOT/target/services.env"

case "$cmd" in
  install)
    services_install
    ;;
  start)
    env_file="${1:-$default_env}"
    if [ -f "$env_file" ]; then
      # shellcheck source=/dev/null
      if (. "$env_file" && [ -n "${BERTH_SERVICES_S3_PID:-}" ] && kill -0 "$BERTH_SERVICES_S3_PID" 2>/dev/null); then
        die "services from $env_file still run: scripts/services.sh stop${1:+ $1} first"
      fi
    fi
    SVC_DETACHED=1 SERVICES_ENV_FILE="$env_file"
    services_start
    echo "services running; environment in $env_file (. $env_file); stop with: scripts/services.sh stop${1:+ $1}"
    ;;
  stop)
    env_file="${1:-$default_env}"
    [ -f "$env_file" ] || die "no $env_file: nothing started by scripts/services.sh start"
    # shellcheck source=/dev/null
    . "$env_file"
    SVC_DIR="$BERTH_SERVICES_DIR" SVC_PG_DATA="$BERTH_SERVICES_PG_DATA"
    # only a process that is still the versitygw we started
    if [ -n "${BERTH_SERVICES_S3_PID:-}" ] && tr '\0' ' ' <"/proc/$BERTH_SERVICES_S3_PID/cmdline" 2>/dev/null |
      grep -qF -- "posix $SVC_DIR/s3"; then
      SVC_S3_PID="$BERTH_SERVICES_S3_PID"
    fi
    services_stop
    case "$SVC_DIR" in
      "${TMPDIR:-/tmp}"/berth-services.*) rm -rf "$SVC_DIR" ;;
    esac
    rm -f "$env_file"
    log "services stopped"
    ;;
  run)
    [ $# -gt 0 ] || die "usage: $0 run CMD [ARGS...]"
    services_start
    rc=0
    "$@" || rc=$?
    exit "$rc"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2
    ;;
esac
