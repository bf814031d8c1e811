#!/usr/bin/env bash
# Generate test images as OCI image layouts, without network:
#   scripts/make-test-images.sh OUTDIR      -> OUTDIR/{small,big,multiarch}, OUTDIR/digests.json
# BIG_LAYER_MIB (default 100) sets the size of the big image's random layer.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [--big-mib N] [--seed S]" >&2; exit 2; }
exec python3 "$(dirname "${BASH_SOURCE[0]}")/make-test-images.py" "$@"
