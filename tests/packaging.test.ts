/**
 * What packaging relies on, checked from the checkout: one version everywhere, the same six
 * platforms in the loader and in scripts/pack.ts, the import rules of src/runtime/ (no cycle in
 * src/, the adapters reached only through the loader), and the loader's behaviour from a path
 * with a space and with a QUIVER_LIB that does not open. scripts/user-project.sh tests the
 * packed tarballs themselves.
 */
import { copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { kernels } from "../mod.ts";
import { version } from "../src/version.ts";
import { platforms } from "../src/runtime/packages.ts";
import { type Host, platformKeys } from "../src/runtime/host.ts";
import { libraryFileName } from "../src/runtime/native.ts";
import { LibraryNotFoundError } from "../src/runtime/loader.ts";
import { targets } from "../scripts/pack.ts";
import { assert, assertEquals, repoPath, runSync, runtime, tempDir, test } from "./harness.ts";

const json = (path: string) => JSON.parse(readFileSync(repoPath(path), "utf8"));

test("packaging: package.json, deno.json and src/version.ts carry one version, and scripts/pack.ts builds the loader's platforms", () => {
  assertEquals(json("package.json").version, version);
  assertEquals(json("deno.json").version, version);
  assertEquals(json("package.json").name, "quiverdb");
  assert(/^\d+\.\d+\.\d+$/.test(version), `${version} is not semver`);
  assertEquals(targets.map((t) => t.platform), [...platforms]);
  // Every target names its npm fields and a library of its OS's kind.
  for (const t of targets) {
    assertEquals(t.platform, `${t.os}-${t.arch}${t.libc ? (t.libc === "glibc" ? "-gnu" : "-musl") : ""}`);
    assertEquals(t.file, libraryFileName(t.os));
  }
});

test("packaging: library names follow the OS (.so, .dylib, .dll) and Linux hosts try their libc's package first", () => {
  assertEquals([libraryFileName("linux"), libraryFileName("darwin"), libraryFileName("win32"), libraryFileName("windows")],
    ["libquiver.so", "libquiver.dylib", "quiver.dll", "quiver.dll"]);
  assertEquals(libraryFileName("linux", true), "libquiver-debug.so");
  const host = (os: string, cpu: string, libc: Host["libc"]): Host =>
    ({ runtime: "bun", os, cpu, libc, env: () => undefined, envDenied: false });
  assertEquals(platformKeys(host("linux", "x64", "musl")), ["linux-x64-musl", "linux-x64-gnu"]);
  assertEquals(platformKeys(host("linux", "arm64", "gnu")), ["linux-arm64-gnu", "linux-arm64-musl"]);
  assertEquals(platformKeys(host("darwin", "arm64", undefined)), ["darwin-arm64"]);
  const error = new LibraryNotFoundError("linux-x64-gnu", ["a: b", "c: d"], "hint");
  assertEquals(error.code, "LIBRARY_NOT_FOUND");
  assert(error.message.includes("for linux-x64-gnu") && error.message.includes("  - a: b\n  - c: d\nhint"), error.message);
});

/** The relative imports of every .ts file under src/ (static and literal dynamic ones). */
function importGraph(files: Record<string, string>): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, text] of Object.entries(files)) {
    const targets: string[] = [];
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)"(\.{1,2}\/[^"]+\.ts)"/g)) {
      const parts = [...file.split("/").slice(0, -1), ...m[1].split("/")];
      const resolved: string[] = [];
      for (const part of parts) {
        if (part === "..") resolved.pop();
        else if (part !== ".") resolved.push(part);
      }
      targets.push(resolved.join("/"));
    }
    graph.set(file, targets);
  }
  return graph;
}

/** Every rule broken by the graph: cycles and arrows into src/runtime/ from the wrong file. */
function importViolations(graph: Map<string, string[]>): string[] {
  const out: string[] = [];
  const state = new Map<string, "open" | "done">();
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "open") {
      out.push(`cycle: ${[...path.slice(path.indexOf(file)), file].join(" -> ")}`);
      return;
    }
    state.set(file, "open");
    for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
    state.set(file, "done");
  };
  for (const file of graph.keys()) visit(file, []);
  const allowedOut = new Set(["src/ffi.gen.ts", "src/version.ts"]);
  for (const [file, targets] of graph) {
    for (const target of targets) {
      const inRuntime = file.startsWith("src/runtime/");
      if (inRuntime && !target.startsWith("src/runtime/") && !allowedOut.has(target)) out.push(`${file} imports ${target}`);
      const adapter = target === "src/runtime/bun.ts" || target === "src/runtime/deno.ts";
      if (adapter && file !== "src/runtime/loader.ts") out.push(`${file} imports the adapter ${target}`);
      const runtimeApi = target === "src/runtime/loader.ts" || target === "src/runtime/native.ts";
      if (!inRuntime && target.startsWith("src/runtime/") && !runtimeApi) out.push(`${file} imports ${target}`);
    }
  }
  return out;
}

test("packaging: src/ has no import cycle, src/runtime/ imports only itself, ffi.gen.ts and version.ts, and only the loader reaches an adapter", () => {
  const files: Record<string, string> = { "mod.ts": readFileSync(repoPath("mod.ts"), "utf8") };
  for (const entry of readdirSync(repoPath("src"), { recursive: true }) as string[]) {
    if (entry.endsWith(".ts")) files[`src/${entry}`] = readFileSync(repoPath(`src/${entry}`), "utf8");
  }
  assert(Object.keys(files).includes("src/runtime/loader.ts"), "the loader was not read");
  const graph = importGraph(files);
  assertEquals(importViolations(graph), []);
  assert((graph.get("src/runtime/loader.ts") ?? []).includes("src/runtime/bun.ts"), "the loader's dynamic import of bun.ts was not seen");
  // Canaries: the old circle, and a file reaching an adapter directly, are caught.
  const broken = importGraph({
    ...files,
    "src/runtime/bun.ts": `${files["src/runtime/bun.ts"]}\nimport "./loader.ts";\n`,
    "src/index.ts": `${files["src/index.ts"]}\nimport "./runtime/deno.ts";\n`,
  });
  const found = importViolations(broken);
  const cycle = found.find((v) => v.startsWith("cycle:"));
  assert(cycle !== undefined && cycle.includes("src/runtime/loader.ts") && cycle.includes("src/runtime/bun.ts"), found.join("\n"));
  assert(found.includes("src/index.ts imports the adapter src/runtime/deno.ts"), found.join("\n"));
});

function runtimeCommand(script: string): string[] {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  return runtime === "bun" ? [g.process.execPath, script] : [g.Deno.execPath(), "run", "--allow-ffi", script];
}

test("packaging: from a checkout copied to a path with spaces, the loader finds the local build (file URLs decoded)", () => {
  const base = tempDir();
  const copy = join(base, "a dir with spaces");
  try {
    mkdirSync(join(copy, "zig-out", "lib"), { recursive: true });
    copyFileSync(repoPath("mod.ts"), join(copy, "mod.ts"));
    cpSync(repoPath("src"), join(copy, "src"), { recursive: true });
    const library = basename(kernels.info().library);
    copyFileSync(kernels.info().library, join(copy, "zig-out", "lib", library));
    const script = join(copy, "search.ts");
    const text = `import { Index, kernels } from "./mod.ts";
using index = new Index({ dimensions: 2 });
index.add(7, new Float32Array([0, 1]));
console.log(JSON.stringify([Number(index.search(new Float32Array([0, 1]), 1).keys[0]), kernels.info().source, kernels.info().library]));
`;
    writeFileSync(script, text);
    const run = runSync(runtimeCommand(script), { cwd: base, clearEnv: true, env: { PATH: "/usr/bin:/bin" } });
    const out = new TextDecoder().decode(run.stdout).trim();
    assertEquals(run.code, 0, run.stderr);
    const source = runtime === "bun" ? "embedded local build" : "local build";
    assertEquals(out, JSON.stringify([7, source, join(copy, "zig-out", "lib", library)]));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test("packaging: a QUIVER_LIB that does not open is an error naming it, not a silent fallback", () => {
  const missing = join(tempDir(), "no such library.so");
  const run = runSync(runtimeCommand(repoPath("examples/hello.ts")), { env: { QUIVER_LIB: missing } });
  if (runtime === "deno") {
    // Deno reads QUIVER_LIB only with --allow-env.
    const deno = runtimeCommand("")[0];
    const withEnv = runSync([deno, "run", "--allow-ffi", "--allow-env", repoPath("examples/hello.ts")], { env: { QUIVER_LIB: missing } });
    assert(withEnv.code !== 0, "deno: a broken QUIVER_LIB was ignored");
    assert(withEnv.stderr.includes(`QUIVER_LIB: ${missing}`), withEnv.stderr);
    // Without --allow-env the variable is not read (no prompt, no crash): the local build loads.
    assertEquals(run.code, 0, run.stderr);
    return;
  }
  assert(run.code !== 0, "bun: a broken QUIVER_LIB was ignored");
  assert(run.stderr.includes("LibraryNotFoundError") && run.stderr.includes(`QUIVER_LIB: ${missing}`), run.stderr);
});
