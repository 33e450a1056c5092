#!/usr/bin/env bash
# The native tests built for aarch64 Linux (musl, so no aarch64 sysroot is needed) and run under
# qemu-user: every kernel of the NEON object is checked against the portable ones, and the whole
# index runs on a weakly ordered memory model's compiler output. Installs Debian's
# qemu-user-static when it is missing and this runs as root; otherwise says why it skips.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$QUIVER_ROOT"

qemu="$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)"
if [ -z "$qemu" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "test-aarch64: installing qemu-user-static (Debian)"
  apt-get update -qq >/dev/null && apt-get install -y -qq qemu-user-static >/dev/null
  qemu="$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)"
fi
if [ -z "$qemu" ]; then
  echo "test-aarch64: skip: no qemu-aarch64 and cannot install qemu-user-static (not root or no apt-get)"
  exit 0
fi
# Zig runs foreign test binaries through `qemu-aarch64` on PATH.
shim="$QUIVER_TOOLS/qemu"
mkdir -p "$shim"
ln -sf "$qemu" "$shim/qemu-aarch64"
PATH="$shim:$PATH" "$ZIG" build test -Dtarget=aarch64-linux-musl -fqemu --summary all 2>&1 \
  | grep -v '^\[default\] (warn)'

# QUIVER_ARM_TS=1: also the TS specs that start no child process, under Bun's linux-arm64 build
# emulated by qemu (Debian's libc6-arm64-cross gives it an aarch64 glibc), on the library
# cross-compiled for aarch64 glibc 2.17. About two minutes; not part of the CI run.
if [ "${QUIVER_ARM_TS:-0}" = 1 ]; then
  [ -d /usr/aarch64-linux-gnu/lib ] || apt-get install -y -qq libc6-arm64-cross >/dev/null
  arm="$QUIVER_TOOLS/arm64"
  mkdir -p "$arm"
  bun_version="$("$BUN" --version)"
  if [ ! -x "$arm/package/bin/bun" ]; then
    (cd "$arm" && npm pack --silent "@oven/bun-linux-aarch64@$bun_version" >/dev/null \
      && tar xzf "oven-bun-linux-aarch64-$bun_version.tgz")
  fi
  "$ZIG" build lib -Dtarget=aarch64-linux-gnu.2.17 -Doptimize=ReleaseFast --prefix "$arm/lib"
  QUIVER_LIB="$arm/lib/lib/libquiver.so" "$qemu" -L /usr/aarch64-linux-gnu "$arm/package/bin/bun" \
    test tests/recall.test.ts tests/quantized.test.ts tests/views.test.ts tests/snapshot.test.ts \
    tests/errors.test.ts tests/duplicates.test.ts
fi
