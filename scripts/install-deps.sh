#!/usr/bin/env bash
# Install what berth's real-world tests need, when missing (idempotent; seconds when all is there):
#   apt:  skopeo, podman (+ uidmap, fuse-overlayfs), jq, curl, python3, ca-certificates, postgresql
#         docker-registry and containerd (the pull-through cache tests of scripts/proxy.sh)
#   go:   crane, oras, regctl, versitygw (the S3 server of the scale-out tests; a cold build takes
#         ~4-7 min) (pinned, `go install` into $(go env GOPATH)/bin)
#   the two OCI conformance suites, built once and cached in ${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools/
# Needs: Debian/Ubuntu with apt (root or sudo), Go >= 1.24 on PATH, reachable package registries.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step_start=$SECONDS
step() { log "$1 done in $((SECONDS - step_start))s"; step_start=$SECONDS; }

# --- apt packages ------------------------------------------------------------------------------
# command -> package
declare -A APT_CMDS=(
  [skopeo]=skopeo [podman]=podman [jq]=jq [curl]=curl [python3]=python3
  [newuidmap]=uidmap [fuse-overlayfs]=fuse-overlayfs [setsid]=util-linux [timeout]=coreutils
  # scripts/proxy.sh: CNCF distribution as an upstream (and its proxy mode), containerd as a mirror client
  [docker-registry]=docker-registry [containerd]=containerd [ctr]=containerd
)
missing=()
for cmd in "${!APT_CMDS[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${APT_CMDS[$cmd]}")
done
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  log "apt-get install ${missing[*]}"
  apt_install "${missing[@]}"
  if printf '%s\n' "${missing[@]}" | grep -qx docker-registry; then
    # Debian's package enables a service on :5000 where an init system runs it; only the binary is used.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
      systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
  fi
fi
step "apt packages"

# PostgreSQL for the scale-out tests (lib.sh ensure_postgres: Debian's package; its own cluster is
# stopped again on a fresh install, the tests start throwaway clusters)
ensure_postgres
step "postgresql ($(basename "$(dirname "$(pg_bindir)")"))"

# --- Go tools ----------------------------------------------------------------------------------
command -v go >/dev/null 2>&1 || die "go not found: Go >= 1.24 is needed (crane/oras/regctl and the conformance suites are built from source)"
gover="$(go env GOVERSION | sed 's/^go//')"
case "$gover" in
  1.2[4-9]*|1.[3-9][0-9]*|[2-9].*) ;;
  *) die "Go $gover is too old: >= 1.24 needed" ;;
esac

# go_tool CMD MODULE/PATH VERSION VERSION_REGEX: go install unless `CMD version` already matches.
go_tool() {
  local cmd=$1 pkg=$2 ver=$3 have start=$SECONDS
  if command -v "$cmd" >/dev/null 2>&1 && have="$("$cmd" version 2>/dev/null)" && grep -qE "$4" <<<"$have"; then
    return 0
  fi
  log "go install $pkg@$ver"
  GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0 go install "$pkg@$ver"
  "$cmd" version >/dev/null 2>&1 || die "$cmd was installed but does not run from PATH ($PATH)"
  log "installed $cmd $ver in $((SECONDS - start))s"
}
go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION" "^${CRANE_VERSION//./\\.}\$"
go_tool oras oras.land/oras/cmd/oras "$ORAS_VERSION" "Version:[[:space:]]+${ORAS_VERSION#v}"
go_tool regctl github.com/regclient/regclient/cmd/regctl "$REGCTL_VERSION" "VCSTag:[[:space:]]+${REGCTL_VERSION//./\\.}\$"
step "go tools (crane $CRANE_VERSION, oras $ORAS_VERSION, regctl $REGCTL_VERSION)"
ensure_versitygw
step "versitygw $VERSITYGW_VERSION"

# --- conformance suites (cached) ---------------------------------------------------------------
"$ROOT/scripts/conformance.sh" --build-only
step "conformance suites"

gobin="$(go env GOBIN)"; [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
log "all test dependencies present (Go tools in $gobin, which the scripts put on PATH themselves)"
