# Sourced by every script: one place that says where the pinned toolchain lives.
# Zig comes from the PyPI package `ziglang` at this exact version; Bun and Deno from npm (package.json).
QUIVER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZIG_VERSION="0.14.1"
QUIVER_TOOLS="$QUIVER_ROOT/.tools"
ZIG="$QUIVER_TOOLS/zig-$ZIG_VERSION/ziglang/zig"
BUN="$QUIVER_ROOT/node_modules/bun/bin/bun.exe"
[ -x "$BUN" ] || BUN="$QUIVER_ROOT/node_modules/@oven/bun-linux-x64/bin/bun"
DENO="$QUIVER_ROOT/node_modules/deno/deno"
[ -x "$DENO" ] || DENO="$(ls "$QUIVER_ROOT"/node_modules/@deno/*/deno 2>/dev/null | head -n 1)"
export QUIVER_ROOT ZIG_VERSION ZIG BUN DENO
export PATH="$(dirname "$ZIG"):$(dirname "$BUN"):$(dirname "${DENO:-/nonexistent/deno}"):$PATH"
