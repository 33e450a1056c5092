# Sourced by every script: one place that says where the pinned toolchain lives.
# Zig comes from the PyPI package `ziglang` at this exact version; Bun and Deno from npm (package.json).
QUIVER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZIG_VERSION="0.14.1"
QUIVER_TOOLS="$QUIVER_ROOT/.tools"
ZIG="$QUIVER_TOOLS/zig-$ZIG_VERSION/ziglang/zig"
# npm 11 skips install scripts, so node_modules/bun/bin/bun.exe may be the package's 450-byte
# placeholder: take the first real (large) executable among the platform packages' binaries.
quiver_binary() {
  local candidate
  for candidate in "$@"; do
    if [ -f "$candidate" ] && [ "$(wc -c <"$candidate")" -gt 1000000 ]; then
      echo "$candidate"
      return
    fi
  done
}
BUN="$(quiver_binary "$QUIVER_ROOT"/node_modules/@oven/bun-*/bin/bun "$QUIVER_ROOT/node_modules/bun/bin/bun.exe")"
DENO="$(quiver_binary "$QUIVER_ROOT"/node_modules/@deno/*/deno "$QUIVER_ROOT/node_modules/deno/deno")"
export QUIVER_ROOT ZIG_VERSION ZIG BUN DENO
export PATH="$(dirname "$ZIG"):$(dirname "${BUN:-/nonexistent/bun}"):$(dirname "${DENO:-/nonexistent/deno}"):$PATH"
