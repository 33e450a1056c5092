#!/usr/bin/env bash
# Installs everything Quiver needs on a machine that has only node/npm and python3/pip,
# then builds the native library. Idempotent: a second run only checks.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$QUIVER_ROOT"

if [ ! -x "$ZIG" ] || [ "$("$ZIG" version)" != "$ZIG_VERSION" ]; then
  echo "setup: installing zig $ZIG_VERSION from PyPI (ziglang) into .tools/"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$QUIVER_TOOLS/zig-$ZIG_VERSION" "ziglang==$ZIG_VERSION"
fi

if [ -z "$BUN" ] || [ -z "$DENO" ] || [ ! -d node_modules/mitata ] || [ ! -x node_modules/.bin/tsc ] || [ ! -d node_modules/@types/bun ] \
  || [ ! -d node_modules/h5wasm ] || [ ! -d node_modules/@langchain/core ]; then
  echo "setup: installing bun, deno, mitata, typescript and @types/bun from npm"
  npm install --no-audit --no-fund --loglevel=error
fi
source scripts/env.sh
# scripts/pack.sh checks the glibc floor of the Linux libraries with readelf (Debian: binutils).
if ! command -v readelf >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing the Debian package binutils (readelf)"
  apt-get install -y -qq binutils >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq binutils >/dev/null 2>&1; } \
    || echo "setup: could not install binutils; scripts/pack.sh will stop at the glibc check"
fi
# The platform packages (@oven/bun-*, @deno/*) carry the binaries; make sure they can run.
for binary in "$BUN" "$DENO"; do
  if [ -z "$binary" ]; then echo "setup: bun or deno binary not found under node_modules" >&2; exit 1; fi
  [ -x "$binary" ] || chmod +x "$binary"
done

echo "setup: zig $("$ZIG" version), bun $("$BUN" --version), $("$DENO" --version | head -n 1)"
"$ZIG" build --summary none
echo "setup: built $(ls zig-out/lib/)"
