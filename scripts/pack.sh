#!/usr/bin/env bash
# Builds and packs every npm package into dist/pack/: quiverdb (compiled JS + declarations) and
# one @quiverdb/<platform> per target, its library cross-compiled by Zig (release, stripped,
# glibc 2.17 floor checked). Targets that do not compile yet are skipped with their errors.
#   bash scripts/pack.sh [--platforms=all|host|linux-x64-gnu,...] [--out=dist/pack]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$QUIVER_ROOT"
[ -x node_modules/.bin/tsc ] || bash scripts/setup.sh
exec "$BUN" scripts/pack.ts "$@"
