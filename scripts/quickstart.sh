#!/usr/bin/env bash
# Quick start, step 1: install everything that is missing, build the native library, and run the
# main job (build + search an index on Fashion-MNIST if installed, else a generated set).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$QUIVER_ROOT"
bash scripts/setup.sh
# The toolchain paths exist only now (on a fresh machine setup.sh just installed them).
source scripts/env.sh
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "quickstart: installing the Debian package dataset-fashion-mnist (real benchmark data)"
  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) \
    || echo "quickstart: could not install it; using a generated data set"
fi
"$BUN" examples/demo.ts
