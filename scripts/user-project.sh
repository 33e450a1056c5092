#!/usr/bin/env bash
# Quiver as a user gets it: packs quiverdb and this machine's platform package, installs the two
# tarballs into a fresh project in a temporary folder outside the repository (its path has a
# space), offline, and there, with no Zig on PATH and nothing of the repository reachable:
#   - runs a search under Bun, and under Deno (bare and npm: specifiers over the local
#     node_modules, --allow-ffi only), and under Deno with Quiver's sources loaded over HTTP as
#     from JSR (the library then comes through an npm: specifier of the platform package);
#   - type-checks the project with tsc --noEmit (@types/bun) and deno check, each with a canary
#     (a file with a type error that must fail);
#   - bun build --compile and bun build --outdir, each run from another, empty folder;
#   - checks the tarballs' contents and sizes against the budget below;
#   - and, in the checkout, that tsc, deno check and `deno publish --dry-run` pass.
# Prints one line per check and closes with "user-project: N passed, M failed".
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$QUIVER_ROOT"

# Budget of the packed tarballs. The main package is JavaScript and declarations: the library
# (36 KiB at 0.1.0), the CLI, the format readers and the LangChain store (87 KiB in all), then
# records (string ids, metadata, the filter language: 141 KiB in all); a platform package is
# one stripped library (about 205 KiB gzipped on x64, 287 KiB with records, 323 KiB with
# rabitq storage and its scan kernel in each CPU level's object). An unstripped or Debug
# library (>= 900 KiB packed), or tests and benches in the main package, break it.
budget_main_kib=160
budget_platform_kib=340

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "user-project: ok   $1"; }
bad() { failed=$((failed + 1)); echo "user-project: FAIL $1" >&2; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/    /' >&2; return 0; }

work="$(mktemp -d "${TMPDIR:-/tmp}/quiver user.XXXXXX")"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
case "$work" in "$QUIVER_ROOT"*) echo "user-project: $work is inside the repository" >&2; exit 1 ;; esac

errors="$work/stderr"
pack_out="$work/pack"
if ! out="$(bash scripts/pack.sh --platforms=host --out="$pack_out" 2>&1)"; then
  echo "$out" >&2
  echo "user-project: 0 passed, 1 failed"
  exit 1
fi
echo "$out" | sed 's/^/  /'
main_tgz="$(ls "$pack_out"/quiverdb-[0-9]*.tgz 2>/dev/null | head -n 1)"
platform_tgz="$(ls "$pack_out"/quiverdb-*-*-[0-9]*.tgz 2>/dev/null | grep -v "/quiverdb-[0-9]" | head -n 1)"
if [ -z "$main_tgz" ] || [ -z "$platform_tgz" ]; then
  echo "user-project: pack left no tarballs in $pack_out" >&2
  echo "user-project: 0 passed, 1 failed"
  exit 1
fi

# The checkout's own sources as a publisher sees them: tsc and deno check clean, and JSR's dry
# run without slow types (its warnings about the two dynamic imports built at run time are
# expected: bun:ffi under Bun, npm:@quiverdb/<platform> under Deno).
if out="$(node_modules/.bin/tsc --noEmit -p tsconfig.json 2>&1)" && out2="$("$DENO" check mod.ts 2>&1)"; then ok "tsc --noEmit and deno check of mod.ts are clean"
else bad "type check of Quiver's sources" "$out ${out2:-}"; fi
if out="$("$DENO" publish --dry-run --allow-dirty 2>&1)"; then ok "deno publish --dry-run (JSR) passes, no slow types"
else bad "deno publish --dry-run" "$out"; fi

# Sizes and contents.
size_kib() { echo $(( ($(wc -c <"$1") + 1023) / 1024 )); }
if [ "$(size_kib "$main_tgz")" -le "$budget_main_kib" ]; then ok "$(basename "$main_tgz") is $(size_kib "$main_tgz") KiB (budget $budget_main_kib)"
else bad "$(basename "$main_tgz") is $(size_kib "$main_tgz") KiB, over the budget of $budget_main_kib KiB"; fi
if [ "$(size_kib "$platform_tgz")" -le "$budget_platform_kib" ]; then ok "$(basename "$platform_tgz") is $(size_kib "$platform_tgz") KiB (budget $budget_platform_kib)"
else bad "$(basename "$platform_tgz") is $(size_kib "$platform_tgz") KiB, over the budget of $budget_platform_kib KiB"; fi
listing="$(tar tzf "$main_tgz")"
strays="$(grep -vE '^package/((mod|formats|langchain)\.(js|d\.ts)|(src|cli)/.*\.(js|d\.ts)|bench/svg\.(js|d\.ts)|package\.json|LICENSE|README\.md|CHANGELOG\.md)$' <<<"$listing")"
if [ -z "$strays" ] && grep -q '^package/src/runtime/loader.js$' <<<"$listing" && grep -q '^package/mod.d.ts$' <<<"$listing"; then
  ok "quiverdb ships its entries (mod, formats, langchain), src/ and cli/ as .js + .d.ts, LICENSE, README, CHANGELOG and nothing else"
else bad "quiverdb's tarball holds unexpected files (or lacks the loader)" "$strays"; fi

# The project: a folder with a space, a separate empty folder to run builds from.
app="$work/my app"
empty="$work/empty dir"
mkdir -p "$app" "$empty"
cp "$main_tgz" "$platform_tgz" "$app/"
cat >"$app/package.json" <<'EOF'
{ "name": "user-app", "type": "module", "private": true }
EOF
cat >"$app/app.ts" <<'EOF'
import { Index, kernels, LockedError, QuiverError, type SearchResult } from "quiverdb";

using index = new Index({ dimensions: 4, metric: "l2" });
for (let i = 0; i < 200; i++) index.add(i, new Float32Array([i, i % 7, i % 3, 1]));
const result: SearchResult = index.search(new Float32Array([42, 0, 0, 1]), 3);
// Error classes are types as well as values.
let caught: LockedError | undefined;
try {
  throw new LockedError("test");
} catch (error) {
  if (error instanceof LockedError && error instanceof QuiverError) caught = error;
}
const info = kernels.info();
console.log(JSON.stringify({ keys: Array.from(result.keys, Number), size: index.size, code: caught?.code, source: info.source, library: info.library }));
EOF
expected_prefix='{"keys":[42,43,44],"size":200,"code":"LOCKED"'

# No Zig, no repository: only the system's tools and the two runtimes' own folders on PATH.
clean_path="/usr/bin:/bin"
if PATH="$clean_path" command -v zig >/dev/null; then bad "zig is on the clean PATH ($clean_path)"; fi
bun_dir="$(dirname "$BUN")"
run_clean() { (cd "$1" && shift && env -i PATH="$clean_path" HOME="$work" TMPDIR="$work" BUN_INSTALL_CACHE_DIR="$work/bun-cache" DENO_DIR="$work/deno-cache" "$@"); }

if out="$(run_clean "$app" "$BUN" add --offline "./$(basename "$main_tgz")" "./$(basename "$platform_tgz")" 2>&1)" \
  && [ -f "$app/node_modules/quiverdb/mod.js" ]; then
  ok "bun add --offline of the two tarballs"
else bad "bun add --offline of the two tarballs" "$out"; fi
platform_name="$(basename "$platform_tgz" | sed -E 's/^quiverdb-(.*)-[0-9]+\.[0-9]+\.[0-9]+.*\.tgz$/\1/')"

# A run's stdout is checked; its stderr (Deno's download lines, errors) is shown on failure.
expect_run() { # name, expected source, expected library prefix, stdout
  local name="$1" source="$2" library="$3" out="$4"
  if [[ "$out" == "$expected_prefix"* ]] && [[ "$out" == *"\"source\":\"$source\""* ]] && [[ "$out" == *"\"library\":\"$library"* ]]; then ok "$name"
  else bad "$name (wanted $expected_prefix..., source $source, library $library...)" "$out
$(cat "$errors")"; fi
}

installed_lib="$app/node_modules/@quiverdb/$platform_name/"
expect_run "bun runs a search with the platform package's library" "@quiverdb/$platform_name" "$installed_lib" \
  "$(run_clean "$app" "$BUN" app.ts 2>"$errors")"
expect_run "bun runs it from another working directory" "@quiverdb/$platform_name" "$installed_lib" \
  "$(run_clean "$empty" "$BUN" "$app/app.ts" 2>"$errors")"

echo '{ "nodeModulesDir": "manual" }' >"$app/deno.json"
sed 's#from "quiverdb"#from "npm:quiverdb"#' "$app/app.ts" >"$app/app_npm.ts"
expect_run "deno run --allow-ffi (bare specifier, local node_modules)" "@quiverdb/$platform_name" "$installed_lib" \
  "$(run_clean "$app" "$DENO" run --allow-ffi app.ts 2>"$errors")"
expect_run "deno run --allow-ffi (npm:quiverdb, local node_modules)" "@quiverdb/$platform_name" "$installed_lib" \
  "$(run_clean "$app" "$DENO" run --allow-ffi app_npm.ts 2>"$errors")"

# The JSR path: Quiver's TypeScript sources over HTTP, the library through npm:@quiverdb/<p>.
served="$work/served"
mkdir -p "$served"
cp -r mod.ts src "$served/"
cat >"$work/serve.ts" <<'EOF'
const root = process.argv[2];
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(request) {
    const file = Bun.file(root + decodeURIComponent(new URL(request.url).pathname));
    if (!(await file.exists())) return new Response("not found", { status: 404 });
    return new Response(file, { headers: { "content-type": "application/typescript" } });
  },
});
console.log(server.port);
EOF
"$BUN" "$work/serve.ts" "$served" >"$work/port" &
server_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port="$(cat "$work/port")"
sed "s#from \"quiverdb\"#from \"http://127.0.0.1:$port/mod.ts\"#" "$app/app.ts" >"$app/app_http.ts"
version="$(sed -nE 's/.*"version": "([^"]+)".*/\1/p' package.json | head -n 1)"
expect_run "deno run with Quiver over HTTP (as from JSR): npm:@quiverdb/$platform_name@$version" \
  "npm:@quiverdb/$platform_name@$version" "$installed_lib" \
  "$(run_clean "$app" "$DENO" run --allow-ffi --allow-import="127.0.0.1:$port" app_http.ts 2>"$errors")"
kill "$server_pid" 2>/dev/null
server_pid=""

# Type checks, each with a canary that must fail.
cat >"$app/canary.ts" <<'EOF'
import { Index, LockedError } from "quiverdb";
const index = new Index({ dimensions: 4 });
const wrong: string = index.size;
const alsoWrong: LockedError = index;
console.log(wrong, alsoWrong);
EOF
mkdir -p "$app/node_modules/@types"
for types in @types/bun @types/node bun-types undici-types; do cp -r "node_modules/$types" "$app/node_modules/$types"; done
tsconfig() { cat <<EOF
{ "compilerOptions": { "lib": ["ESNext"], "target": "ESNext", "module": "Preserve", "moduleResolution": "bundler",
  "moduleDetection": "force", "verbatimModuleSyntax": true, "noEmit": true, "strict": true, "skipLibCheck": false,
  "types": ["bun"] }, "files": ["$1"] }
EOF
}
# Not tsconfig.json: Deno would read that one too, and a user's Deno project has none.
tsconfig app.ts >"$app/tsconfig.tsc.json"
tsconfig canary.ts >"$app/tsconfig.canary.json"
tsc="$QUIVER_ROOT/node_modules/.bin/tsc"
if out="$(run_clean "$app" "$tsc" --noEmit -p tsconfig.tsc.json 2>&1)"; then ok "tsc --noEmit (@types/bun, skipLibCheck off) is clean"
else bad "tsc --noEmit on the user's project" "$out"; fi
out="$(run_clean "$app" "$tsc" --noEmit -p tsconfig.canary.json 2>&1)"
if grep -q "canary.ts(3,7): error TS2322" <<<"$out" && grep -q "canary.ts(4,7): error TS2" <<<"$out"; then ok "tsc's canary: a type error against Quiver's types fails"
else bad "tsc's canary did not fail as it should" "$out"; fi
if out="$(run_clean "$app" "$DENO" check app.ts app_npm.ts 2>&1)"; then ok "deno check is clean"
else bad "deno check on the user's project" "$out"; fi
out="$(run_clean "$app" "$DENO" check canary.ts 2>&1)"
if grep -q "TS2322" <<<"$out"; then ok "deno check's canary: a type error against Quiver's types fails"
else bad "deno check's canary did not fail as it should" "$out"; fi

# Bundles, run from another folder with an empty environment.
if out="$(run_clean "$app" "$BUN" build --compile app.ts --outfile "$work/app-bin" 2>&1)"; then
  cp "$work/app-bin" "$empty/app-bin"
  expect_run "bun build --compile: the binary runs alone from an empty folder" "@quiverdb/$platform_name" '/$bunfs/' \
    "$(cd "$empty" && env -i TMPDIR="$empty" ./app-bin 2>"$errors")"
  rm -f "$empty/app-bin"
else bad "bun build --compile" "$out"; fi
if out="$(run_clean "$app" "$BUN" build app.ts --target bun --outdir "$work/bundle" 2>&1)"; then
  mv "$work/bundle" "$work/moved bundle"
  expect_run "bun build --outdir: the moved bundle runs from another folder" "@quiverdb/$platform_name" "$work/moved bundle/" \
    "$(run_clean "$empty" "$BUN" "$work/moved bundle/app.js" 2>"$errors")"
else bad "bun build --outdir" "$out"; fi

# The CLI from the installed package (its `bin`): build an index from a .npy file the package's
# own writer made, then search row 0 of the same file; the row must find itself at distance 0.
cat >"$app/make_npy.ts" <<'EOF'
import { writeNpy } from "quiverdb/formats";
const count = 300, dimensions = 8;
const data = new Float32Array(count * dimensions);
for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37) * 10;
writeNpy("vectors.npy", { count, dimensions, data });
EOF
cli_out="$(run_clean "$app" "$BUN" make_npy.ts 2>&1 \
  && run_clean "$app" "$BUN" node_modules/.bin/quiver build vectors.npy "idx.qv" --json 2>&1 \
  && run_clean "$empty" "$BUN" "$app/node_modules/.bin/quiver" search "$app/idx.qv" \
    --from "$app/vectors.npy" --row 0 -k 3 --json 2>&1)"
if grep -qE '"key": ?"?0"?,' <<<"$cli_out" && grep -qE '"distance": ?0[,}]' <<<"$cli_out"; then
  ok "the installed quiver CLI builds from .npy and finds row 0 at distance 0"
else bad "the installed quiver CLI (quiver build vectors.npy idx.qv; quiver search --from --row 0)" "$cli_out"; fi

# The loader's message when the library is missing names the platform and what it tried.
rm -rf "$app/node_modules/@quiverdb"
out="$(run_clean "$app" "$BUN" app.ts 2>&1)"
if grep -q "native library for $platform_name was not found" <<<"$out" && grep -q "@quiverdb/$platform_name: not installed" <<<"$out"; then
  ok "without the platform package, the error names $platform_name and every path tried"
else bad "the not-found error" "$out"; fi

echo "user-project: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
