#!/usr/bin/env bash
# Runs every test: tidy (native/tidy.zig), native (Debug, leak-checked), native under ThreadSanitizer (and its canary),
# and the TypeScript specs under Bun and under Deno. Installs the toolchain first if it is
# missing. QUIVER_SOAK=1 makes the stress and crash suites run for minutes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$QUIVER_ROOT"
bash scripts/setup.sh
# The toolchain paths exist only now (on a fresh machine setup.sh just installed them).
source scripts/env.sh

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
step() { printf '\n== %s\n' "$*"; }

# A failing step is recorded and the next still runs, so one run shows everything; the exit
# status fails at the end.
status=0

step "tidy: zig fmt, lines within 100 columns, import placement, direction and cycles"
"$ZIG" build tidy --summary all 2>&1 | tee -a "$log" | { grep -E "Build Summary|error|native/" || true; } \
  || status=1

step "native tests (Debug, leak-checked)"
"$ZIG" build test --summary all 2>&1 | tee -a "$log" \
  | { grep -E "Build Summary|error:|failed:" || true; } || status=1

step "native tests under ThreadSanitizer (and its canaries: a race TSan must report, a lock-order inversion Debug must stop)"
"$ZIG" build test-tsan --summary all 2>&1 | tee -a "$log" \
  | { grep -E "Build Summary|error:|failed:|WARNING" || true; } || status=1
"$ZIG" build tsan-canary lock-order-canary --summary failures || status=1

step "native tests on aarch64 (NEON kernels included) under qemu-user"
if bash scripts/test-aarch64.sh 2>&1 | tee -a "$log" | { grep -E "Build Summary|error:|skip" || true; }; then :
else status=1; fi

step "TypeScript specs under Bun"
"$BUN" test 2>&1 | tee -a "$log" || status=1

step "TypeScript specs under Deno"
"$DENO" test -A --no-check tests/ 2>&1 | tee -a "$log" || status=1

step "a user's project: the packed tarballs installed outside the repository, run, type-checked, bundled"
bash scripts/user-project.sh 2>&1 | tee -a "$log" || status=1

# One closing line over all the runners (zig "N/M tests passed", bun " N pass"/" N fail",
# deno "| N passed | N failed", user-project.sh "user-project: N passed, N failed").
plain="$(sed -E 's/\x1b\[[0-9;]*m//g' "$log")"
passed=0
failed=0
# zig: "N/M tests passed" or "N/M tests passed; S skipped" (skipped tests are not failures).
for triple in $(grep -oE '[0-9]+/[0-9]+ tests passed(; [0-9]+ skipped)?' <<<"$plain" \
  | sed -E 's#([0-9]+)/([0-9]+) tests passed(; ([0-9]+) skipped)?#\1:\2:\4#'); do
  IFS=: read -r p m s <<<"$triple"
  passed=$((passed + p)); failed=$((failed + m - p - ${s:-0}))
done
for n in $(grep -oE '^ [0-9]+ pass$' <<<"$plain" | grep -oE '[0-9]+'); do passed=$((passed + n)); done
for n in $(grep -oE '^ [0-9]+ fail$' <<<"$plain" | grep -oE '[0-9]+'); do failed=$((failed + n)); done
for pair in $(grep -oE '[0-9]+ passed \| [0-9]+ failed' <<<"$plain" | sed -E 's#([0-9]+) passed \| ([0-9]+) failed#\1:\2#'); do
  passed=$((passed + ${pair%%:*})); failed=$((failed + ${pair##*:}))
done
for pair in $(grep -oE '^user-project: [0-9]+ passed, [0-9]+ failed$' <<<"$plain" | sed -E 's#.*: ([0-9]+) passed, ([0-9]+) failed#\1:\2#'); do
  passed=$((passed + ${pair%%:*})); failed=$((failed + ${pair##*:}))
done
# A failure's message again, at the end: a reader of only the run's last lines (CI keeps a head
# and a tail of a long log) still sees what failed and why. Bun and Deno put "(fail)" / "FAILED"
# on the test and "error:" / "AssertionError" on its message; zig "error:" and "failed:".
if [ "$failed" -ne 0 ] || [ "$status" -ne 0 ]; then
  printf '\n== what failed (repeated from above)\n'
  # An "error:" line and the 6 after it (a spec's message often goes on: files, history). A
  # canary the interleaving checker caught prints "assertion failed" and is not a failure.
  awk '/^error:/ { n = 7 } n > 0 { print; n--; next }
    /^\(fail\)|AssertionError:|FAILED|^[^ ]+ => |failed:|^user-project: FAIL/ && !/passed \| [0-9]+ failed/ \
      && !/^sim: canary .* caught/' \
    <<<"$plain" | cut -c1-600 | head -80 || true
fi
printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
