#!/usr/bin/env bash
# Runs every test: native (Debug), native under ThreadSanitizer, the FFI table drift check, and
# the TypeScript specs under Bun and under Deno. Installs the toolchain first if it is missing.
# Soak mode: QUIVER_SOAK=1 makes the stress and crash suites run for minutes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$QUIVER_ROOT"
bash scripts/setup.sh
# The toolchain paths exist only now (on a fresh machine setup.sh just installed them).
source scripts/env.sh

step() { printf '\n== %s\n' "$*"; }

step "native tests (Debug, leak-checked)"
"$ZIG" build test --summary failures

step "native tests under ThreadSanitizer (and its canary: a deliberate race it must report)"
"$ZIG" build test-tsan --summary failures
"$ZIG" build tsan-canary --summary failures

step "TypeScript specs under Bun"
"$BUN" test

step "TypeScript specs under Deno"
"$DENO" test -A --no-check tests/
