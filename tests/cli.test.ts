/**
 * The `quiver` CLI end to end, run as a child process of the runtime under test: every command,
 * every input format, a corrupt file of each, `--json` parsed and checked against the library,
 * the exit codes, the progress output with and without a terminal, and (Bun) the single binary
 * from `bun build --compile` run from an empty directory with a clean environment.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { JsonlWriter, type Matrix, readNpy, readVectors, writeHdf5, writeNpy, writeVecs } from "../formats.ts";
import { assert, assertEquals, repoPath, rng, runSync, runtime, tempDir, test } from "./harness.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const CLI = repoPath("cli/quiver.ts");
const runtimeCommand: string[] = runtime === "bun" ? [g.process.execPath] : [g.Deno.execPath(), "run", "-A", "--no-check"];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function quiver(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Run {
  const r = runSync([...runtimeCommand, CLI, ...args], options);
  return { code: r.code, stdout: new TextDecoder().decode(r.stdout), stderr: r.stderr };
}

/** Runs a command that must succeed with --json; returns the parsed document. */
// deno-lint-ignore no-explicit-any
function json(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): any {
  const r = quiver([...args, "--json"], options);
  assertEquals(r.code, 0, `quiver ${args.join(" ")} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  const doc = JSON.parse(r.stdout);
  assertEquals(doc.ok, true);
  return doc;
}

/** Runs a command that must fail with `code`; with --json the error document must say so too. */
function fails(args: string[], code: number, mention?: string): Run {
  const r = quiver([...args, "--json"]);
  assertEquals(r.code, code, `quiver ${args.join(" ")}: expected exit ${code}, got ${r.code}:\n${r.stderr}${r.stdout}`);
  const doc = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  assertEquals({ ok: doc.ok, exit: doc.exit }, { ok: false, exit: code }, r.stdout);
  assert(r.stderr.startsWith("quiver: "), `the error is on stderr: ${r.stderr}`);
  if (mention) assert(r.stderr.includes(mention), `the error mentions ${mention}: ${r.stderr}`);
  return r;
}

function matrix(count: number, dimensions: number, seed: number, integers = false): Matrix {
  const random = rng(seed);
  const data = new Float32Array(count * dimensions).map(() => (integers ? Math.floor(random() * 256) : random() * 2 - 1));
  return { data, count, dimensions };
}

function row(m: Matrix, r: number): number[] {
  return Array.from(m.data.subarray(r * m.dimensions, (r + 1) * m.dimensions));
}

/** Writes float16 .npy (numpy's layout) of values exactly representable in half precision. */
function writeNpyF16(path: string, count: number, dimensions: number, seed: number): Matrix {
  const random = rng(seed);
  const halves = new Uint16Array(count * dimensions);
  const data = new Float32Array(count * dimensions);
  for (let i = 0; i < halves.length; i++) {
    const mantissa = Math.floor(random() * 1024), exponent = 13 + Math.floor(random() * 3), sign = random() < 0.5 ? 1 : 0;
    halves[i] = (sign << 15) | (exponent << 10) | mantissa;
    data[i] = (sign ? -1 : 1) * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  const dict = `{'descr': '<f2', 'fortran_order': False, 'shape': (${count}, ${dimensions}), }`.padEnd(117, " ") + "\n";
  const bytes = new Uint8Array(128 + halves.byteLength);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, dict.length, 0]);
  bytes.set(new TextEncoder().encode(dict), 10);
  bytes.set(new Uint8Array(halves.buffer), 128);
  writeFileSync(path, bytes);
  return { data, count, dimensions };
}

function idxGz(path: string, m: Matrix): void {
  const bytes = new Uint8Array(12 + m.data.length);
  const view = new DataView(bytes.buffer);
  bytes.set([0, 0, 0x08, 2]);
  view.setUint32(4, m.count, false);
  view.setUint32(8, m.dimensions, false);
  m.data.forEach((v, i) => (bytes[12 + i] = v));
  writeFileSync(path, gzipSync(bytes));
}

const dir = tempDir();
const at = (name: string) => join(dir, name);
const N = 300, D = 12;
const base = matrix(N, D, 1);
const bytes8 = matrix(N, D, 2, true);

/** The input files of every format, written once (each test may run alone: bun test -t). */
let written: Promise<{ half: Matrix }> | undefined;
function inputs(): Promise<{ half: Matrix }> {
  written ??= (async () => {
    writeNpy(at("v.npy"), base);
    const half = writeNpyF16(at("h.npy"), N, D, 3);
    writeVecs(at("v.fvecs"), base);
    writeVecs(at("v.bvecs"), bytes8);
    writeVecs(at("v.ivecs"), bytes8);
    const jsonl = new JsonlWriter(at("v.jsonl"));
    for (let i = 0; i < N; i++) jsonl.write({ id: `doc-${i}`, vector: row(base, i), metadata: { parity: i % 2 ? "odd" : "even", i } });
    jsonl.close();
    await writeHdf5(at("v.hdf5"), { train: base, test: matrix(5, D, 4) }, "angular");
    idxGz(at("v-idx3-ubyte.gz"), bytes8);
    return { half };
  })();
  return written;
}

/** The index built from `input` (once). */
async function indexOf(input: string): Promise<string> {
  await inputs();
  const index = at(`${input}.qv`);
  if (!existsSync(index)) json(["build", at(input), index]);
  return index;
}

test("cli: --help for quiver and for every command, and usage errors exit 2", () => {
  const top = quiver(["--help"]);
  assertEquals(top.code, 0, top.stderr);
  for (const name of ["build", "search", "get", "stats", "verify", "compact", "backup", "export", "bench"]) {
    assert(top.stdout.includes(`  ${name} `), `quiver --help lists ${name}`);
    const help = quiver([name, "--help"]);
    assertEquals(help.code, 0, help.stderr);
    assert(help.stdout.startsWith(`quiver ${name} `), `${name} --help starts with its usage: ${help.stdout.slice(0, 80)}`);
    assert(help.stdout.includes("--json") && help.stdout.includes("Exit codes"), `${name} --help lists --json and the exit codes`);
  }
  assertEquals(quiver([]).code, 2);
  fails(["frobnicate"], 2, "unknown command");
  fails(["search", "x.qv", "--bogus"], 2, "--bogus");
  fails(["build", "only-one-argument"], 2, "usage: quiver build");
  fails(["search", "x.qv", "-k", "zero", "--vector", "[1]"], 2, "-k zero");
  fails(["search", "x.qv"], 2, "--vector");
  fails(["build", "a.npy", "b.qv", "--metric", "hamming"], 2, "--metric hamming");
});

test("cli: build from every input format, then search --from the same file finds each row itself", async () => {
  const { half } = await inputs();
  const cases: [string, Matrix, string][] = [
    ["v.npy", base, "l2"], ["h.npy", half, "l2"], ["v.fvecs", base, "l2"], ["v.bvecs", bytes8, "l2"], ["v.ivecs", bytes8, "l2"],
    ["v.jsonl", base, "l2"], ["v.hdf5", base, "cosine"], ["v-idx3-ubyte.gz", bytes8, "l2"],
  ];
  for (const [input, m, metric] of cases) {
    const index = at(`${input}.all.qv`);
    const built = json(["build", at(input), index, "--threads", "2", "--batch", "64"]);
    assertEquals({ added: built.added, size: built.size, dimensions: built.dimensions, metric: built.metric }, { added: N, size: N, dimensions: D, metric }, input);
    const stats = json(["stats", index]);
    assertEquals({ size: stats.stats.size, dimensions: stats.stats.dimensions, metric: stats.stats.metric }, { size: N, dimensions: D, metric }, input);
    for (const r of [0, 17, N - 1]) {
      const found = json(["search", index, "--from", at(input), "--row", String(r), "-k", "3"]);
      assertEquals(found.results.length, 3, input);
      const top = found.results[0];
      assertEquals(top.key, String(r), `${input} row ${r}: ${JSON.stringify(found.results)}`);
      assert(Math.abs(top.distance) < 1e-5, `${input} row ${r}: distance ${top.distance}`);
      if (input === "v.jsonl") assertEquals({ id: top.id, metadata: top.metadata }, { id: `doc-${r}`, metadata: { parity: r % 2 ? "odd" : "even", i: r } });
      const got = json(["get", index, String(r)]);
      // Cosine stores normalized vectors; the others store the input exactly.
      if (metric !== "cosine") assertEquals(got.vector, row(m, r), `${input} get ${r}`);
    }
  }
  // The JSON Lines index answers by string id too, and --vector takes a literal query.
  assertEquals(json(["get", at("v.jsonl.all.qv"), "doc-42"]).key, "42");
  const literal = json(["search", at("v.npy.all.qv"), "--vector", JSON.stringify(row(base, 5)), "-k", "1"]);
  assertEquals(literal.results[0].key, "5");
  fails(["get", at("v.npy.all.qv"), "12345"], 3, "not in");
  fails(["get", at("v.jsonl.all.qv"), "doc-nope"], 3, "neither a key nor an id");
  fails(["search", at("v.npy.all.qv"), "--vector", "[1, 2]"], 3, "dimensions");
  fails(["search", at("v.npy.all.qv"), "--from", at("v.npy"), "--row", String(N)], 3, "out of range");
}, 180_000);

test("cli: a corrupt file of each format is bad input (exit 3) and leaves no index behind", async () => {
  await indexOf("v.npy");
  const npy = readFileSync(at("v.npy"));
  const cases: [string, Uint8Array][] = [
    ["cut.npy", npy.subarray(0, npy.length - 10)],
    ["dtype.npy", new Uint8Array(npy).map((b, i) => (i === 22 ? "i".charCodeAt(0) : b))],
    ["cut.fvecs", readFileSync(at("v.fvecs")).subarray(0, 100)],
    ["cut.bvecs", readFileSync(at("v.bvecs")).subarray(0, 30)],
    ["cut.ivecs", readFileSync(at("v.ivecs")).subarray(0, 61)],
    ["bad.jsonl", new TextEncoder().encode('{"id": 1, "vector": [1, 2]}\n{"id": 2, "vector": [1, 2, 3]}\n')],
    ["dup.jsonl", new TextEncoder().encode('{"id": "a", "vector": [1, 2]}\n{"id": "a", "vector": [3, 2]}\n')],
    ["cut.hdf5", readFileSync(at("v.hdf5")).subarray(0, 3000)],
    ["cut-idx3-ubyte.gz", readFileSync(at("v-idx3-ubyte.gz")).subarray(0, 200)],
  ];
  for (const [name, bytes] of cases) {
    writeFileSync(at(name), bytes);
    const r = fails(["build", at(name), at(`${name}.qv`)], 3, name);
    assert(JSON.parse(r.stdout).error.name === "FormatError", `${name}: ${r.stdout}`);
    assert(!existsSync(at(`${name}.qv`)) && !existsSync(at(`${name}.qv.graph`)) && !existsSync(at(`${name}.qv.docs.jsonl`)), `${name}: a failed build left files`);
  }
  fails(["build", at("missing.npy"), at("m.qv")], 3, "no input file");
  fails(["build", at("v.npy"), at("v.npy.qv")], 2, "--append");
});

test("cli: --filter returns exactly the brute-force nearest among matching metadata; no metadata is exit 3", async () => {
  const index = await indexOf("v.jsonl");
  await indexOf("v.npy");
  for (const q of [3, 100]) {
    const found = json(["search", index, "--from", at("v.jsonl"), "--row", String(q), "-k", "5", "--filter", '{"parity": "odd"}', "--ef", "300"]);
    const query = row(base, q);
    const expected = Array.from({ length: N }, (_, i) => i)
      .filter((i) => i % 2 === 1)
      .map((i) => ({ i, d: row(base, i).reduce((s, x, j) => s + (x - query[j]) ** 2, 0) }))
      .sort((a, b) => a.d - b.d)
      .slice(0, 5)
      .map((e) => `doc-${e.i}`);
    assertEquals(found.results.map((r: { id: string }) => r.id), expected, `query ${q}`);
    assert(found.results.every((r: { metadata: { parity: string } }) => r.metadata.parity === "odd"), "every result matches");
  }
  fails(["search", at("v.npy.qv"), "--vector", JSON.stringify(row(base, 0)), "--filter", '{"a": 1}'], 3, "no metadata");
  fails(["search", index, "--vector", JSON.stringify(row(base, 0)), "--filter", "{nope"], 2, "--filter is not JSON");
  fails(["search", index, "--vector", JSON.stringify(row(base, 0)), "--filter", "[1]"], 2, "JSON object");
});

test("cli: export to .npy (with --keys) and JSON Lines gives back the input; backup is searchable with its sidecar", async () => {
  await indexOf("v.npy");
  await indexOf("v.jsonl");
  json(["export", at("v.npy.qv"), at("out.npy"), "--keys", at("keys.npy")]);
  assertEquals(readNpy(at("out.npy")), { data: base.data, count: N, dimensions: D });
  const keys = readFileSync(at("keys.npy"));
  const column = new BigUint64Array(keys.buffer.slice(keys.byteOffset + 128, keys.byteOffset + keys.length));
  assertEquals(Array.from(column), Array.from({ length: N }, (_, i) => BigInt(i)));
  json(["export", at("v.jsonl.qv"), at("out.jsonl")]);
  const lines = readFileSync(at("out.jsonl"), "utf-8").trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(lines.length, N);
  assertEquals(lines[7], { id: "doc-7", vector: row(base, 7), metadata: { parity: "odd", i: 7 } });
  assertEquals((await readVectors(at("out.jsonl"))).data, base.data);
  fails(["export", at("v.npy.qv"), at("out.fvecs")], 2, "export writes");

  const copy = at("copy.qv");
  json(["backup", at("v.jsonl.qv"), copy]);
  const found = json(["search", copy, "--from", at("v.jsonl"), "--row", "9", "-k", "1"]);
  assertEquals({ id: found.results[0].id, key: found.results[0].key }, { id: "doc-9", key: "9" });
  fails(["backup", at("v.jsonl.qv"), copy], 2, "exists");
});

test("cli: build --append upserts by id, compact reclaims the tombstones, verify passes", async () => {
  await inputs();
  const index = at("append.qv");
  json(["build", at("v.jsonl"), index]);
  const changed = new JsonlWriter(at("changed.jsonl"));
  for (let i = 0; i < 50; i++) changed.write({ id: `doc-${i}`, vector: row(base, N - 1 - i), metadata: { changed: true } });
  for (let i = 0; i < 10; i++) changed.write({ id: `new-${i}`, vector: row(base, i), metadata: { fresh: i } });
  changed.close();
  const appended = json(["build", at("changed.jsonl"), index, "--append"]);
  assertEquals({ added: appended.added, size: appended.size }, { added: 60, size: N + 10 });
  assertEquals(json(["get", index, "doc-3"]).vector, row(base, N - 4));
  assertEquals(json(["get", index, "new-2"]).key, String(N + 2));
  assertEquals(json(["get", index, "doc-3"]).metadata, { changed: true });
  const before = json(["stats", index]).stats;
  assert(before.tombstones >= 50, `upserts left tombstones: ${before.tombstones}`);
  const compacted = json(["compact", index, "--threads", "2"]);
  assertEquals(compacted.after.tombstones, 0);
  const report = json(["verify", index]).report;
  assertEquals({ ok: report.ok, live: report.live }, { ok: true, live: N + 10 });
  assertEquals(json(["get", index, "new-9"]).vector, row(base, 9));
  // Appending keeps the index's metric when --metric is not given (the HDF5 index is cosine).
  const cosine = at("append-cosine.qv");
  json(["build", at("v.hdf5"), cosine]);
  const more = json(["build", at("v.npy"), cosine, "--append"]);
  assertEquals({ metric: more.metric, size: more.size }, { metric: "cosine", size: 2 * N });
});

test("cli: a corrupt index is exit 4 for verify, search and stats; a missing one is exit 3", async () => {
  await inputs();
  const index = at("corrupt.qv");
  json(["build", at("v.npy"), index]);
  const files = ["", ".graph", ".upper", ".vectors", ".wal"].filter((s) => existsSync(index + s));
  // Wipe every header copy of the main file: no valid header remains.
  const data = readFileSync(index);
  writeFileSync(index, new Uint8Array(data.length).fill(0xa5));
  for (const command of [["verify", index], ["verify", index, "--full"], ["search", index, "--vector", JSON.stringify(row(base, 0))], ["stats", index]]) {
    fails(command, 4, "corrupt");
  }
  writeFileSync(index, data);
  json(["verify", index]);
  // A flipped byte in the graph file escapes a fast open but not a full one.
  const graph = readFileSync(index + ".graph");
  const flipped = new Uint8Array(graph);
  flipped[4096 + 100] ^= 0xff;
  writeFileSync(index + ".graph", flipped);
  fails(["verify", index, "--full"], 4, "corrupt");
  writeFileSync(index + ".graph", graph);
  assert(files.length >= 3, `index files: ${files}`);
  fails(["stats", at("nothing-here.qv")], 3, "no index at");
});

test("cli: bench reports recall@k against brute force and QPS for each ef, and writes an SVG plot", async () => {
  await indexOf("v.npy");
  const svg = at("bench.svg");
  const doc = json(["bench", at("v.npy.qv"), "--sample", "40", "-k", "5", "--ef", "8,32,128", "--svg", svg]);
  assertEquals({ size: doc.size, k: doc.k, sample: doc.sample, metric: doc.metric }, { size: N, k: 5, sample: 40, metric: "l2" });
  assertEquals(doc.points.map((p: { ef: number }) => p.ef), [8, 32, 128]);
  for (const p of doc.points) assert(p.recall >= 0 && p.recall <= 1 && p.qps > 0, JSON.stringify(p));
  // 300 vectors at ef 128 is an exhaustive walk: recall must be (nearly) perfect.
  assert(doc.points[2].recall >= 0.98, `recall at ef 128: ${doc.points[2].recall}`);
  const text = readFileSync(svg, "utf-8");
  assert(text.startsWith("<svg") && text.includes("<polyline"), "an SVG with a curve");
  const plain = quiver(["bench", at("v.npy.qv"), "--sample", "20", "--ef", "16", "--svg", svg]);
  assertEquals(plain.code, 0, plain.stderr);
  assert(/ef\s+recall@10\s+QPS/.test(plain.stdout), plain.stdout);
});

const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/;

test("cli: progress goes nowhere without a terminal, and draws (with rate and ETA) under a pseudo-terminal", async () => {
  await inputs();
  const env = { QUIVER_PROGRESS_DELAY_MS: "0" };
  const piped = quiver(["build", at("v.npy"), at("p1.qv"), "--batch", "10"], { env });
  assertEquals(piped.code, 0, piped.stderr);
  assert(!CONTROL.test(piped.stderr) && !CONTROL.test(piped.stdout), `control characters without a TTY: ${JSON.stringify(piped.stderr)}`);
  assertEquals(piped.stderr, "");
  // script(1) runs the command on a pseudo-terminal and copies what it draws to stdout.
  const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  const command = [...runtimeCommand, CLI, "build", at("v.npy"), at("p2.qv"), "--batch", "10"].map(quote).join(" ");
  const tty = runSync(["script", "-qec", command, "/dev/null"], { env });
  const drawn = new TextDecoder().decode(tty.stdout);
  assertEquals(tty.code, 0, drawn + tty.stderr);
  assert(drawn.includes("\r\u001b[2K"), `no redraws on a TTY: ${JSON.stringify(drawn.slice(0, 300))}`);
  assert(/building .*\[#*-*\]\s+\d+% [\d,]+\/300 [\d,]+\/s ETA/.test(drawn), `no bar with rate and ETA: ${JSON.stringify(drawn.slice(0, 400))}`);
  assert(drawn.includes("100% 300/300"), `the bar ends at 100%: ${JSON.stringify(drawn.slice(-300))}`);
});

if (runtime === "bun") {
  test("cli: the single binary from bun build --compile builds and searches from an empty directory", async () => {
    await inputs();
    const bun = g.process.execPath as string;
    const buildDir = tempDir();
    const runDir = tempDir();
    try {
      const built = join(buildDir, "quiver");
      // The HDF5 reader's Worker is the second entry point (see src/formats/hdf5.ts).
      const build = runSync([bun, "build", "--compile", CLI, repoPath("src/formats/hdf5_worker.ts"), "--outfile", built], { cwd: repoPath(".") });
      assertEquals(build.code, 0, `bun build --compile failed:\n${build.stderr}`);
      const alone = join(runDir, "quiver");
      copyFileSync(built, alone);
      chmodSync(alone, 0o755);
      assertEquals(readdirSync(runDir), ["quiver"]);
      const tmp = join(runDir, "tmp");
      mkdirSync(tmp);
      copyFileSync(at("v.npy"), join(runDir, "vectors.npy"));
      copyFileSync(at("v.hdf5"), join(runDir, "vectors.hdf5"));
      const run = (args: string[]) => {
        const r = runSync([alone, ...args, "--json"], { cwd: runDir, env: { TMPDIR: tmp }, clearEnv: true });
        const out = new TextDecoder().decode(r.stdout);
        assertEquals(r.code, 0, `quiver ${args.join(" ")} (compiled):\n${r.stderr}${out}`);
        return JSON.parse(out);
      };
      assertEquals(run(["build", "vectors.npy", "idx.qv"]).size, N);
      assertEquals(run(["search", "idx.qv", "--from", "vectors.npy", "--row", "0", "-k", "1"]).results[0].key, "0");
      // HDF5 goes through h5wasm, which must be inside the binary too.
      assertEquals(run(["build", "vectors.hdf5", "h.qv"]).metric, "cosine");
    } finally {
      rmSync(buildDir, { recursive: true, force: true });
      rmSync(runDir, { recursive: true, force: true });
    }
  }, 180_000);
}
