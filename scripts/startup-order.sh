#!/usr/bin/env bash
# Regenerates crates/berth/startup-order.txt: the functions a release berth runs from start
# until it has answered `GET /v2/` and idled a few seconds (embedded default: SQLite + files).
#
# The release link places them first, together (lld's --symbol-ordering-file, see
# crates/berth/build.rs). Start-up otherwise touches ~3 MB of code spread over the whole
# text segment, and the kernel maps 64 KiB around every instruction fault, so idle RSS was
# mostly code pages the process never ran. Symbols missing from the list (renamed, new) only
# lose that packing; rerun this after large changes to start-up or a toolchain update.
#
# Usage: scripts/startup-order.sh        (builds the release binary unless BERTH_BIN is set)
# Needs: valgrind (apt-get install valgrind), python3, objcopy (binutils), curl.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BERTH_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release -p berth
  BIN=${CARGO_TARGET_DIR:-target}/release/berth
fi
OUT=crates/berth/startup-order.txt
for tool in valgrind python3 objcopy curl; do
  command -v "$tool" >/dev/null || { echo "startup-order: $tool is missing" >&2; exit 1; }
done

work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# valgrind cannot read the release binary's 60 MB of line tables; the symbol table is enough.
objcopy --strip-debug "$BIN" "$work/berth"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BERTH_AUTH__MODE=none valgrind --tool=callgrind --demangle=no --compress-strings=no \
  --callgrind-out-file="$work/callgrind.out" \
  "$work/berth" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/berth.log" 2>&1 &
pid=$!
for _ in $(seq 1 240); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
  sleep 0.5
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" || { cat "$work/berth.log" >&2; exit 1; }
sleep 5 # the background jobs' first ticks
curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/"
kill -INT "$pid"
wait "$pid" || true
pid=""

python3 - "$work/callgrind.out" "$OUT" <<'EOF'
import sys

# Functions with costs in the berth object; callgrind names each object once (`ob=`), then
# every function of it (`fn=`) until the next object.
obj, functions = None, set()
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    if line.startswith("ob="):
        obj = line[3:].strip()
    elif line.startswith("fn=") and obj is not None and obj.endswith("/berth"):
        name = line[3:].strip()
        # Code without a symbol shows as an address or "(below main)": nothing to order.
        if not name.startswith(("0x", "(")):
            functions.add(name)
with open(sys.argv[2], "w") as out:
    out.write("".join(f"{name}\n" for name in sorted(functions)))
print(f"startup-order: {len(functions)} functions -> {sys.argv[2]}")
EOF
