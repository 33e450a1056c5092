// Micro-benchmarks with mitata: memory bandwidth (the ceiling every kernel lives under), the cost
// of one trivial FFI call, Quiver's distance kernels in GB/s, and single add / single search /
// batch search for Quiver beside usearch and hnswlib-node in the same run.
//
//   bun bench/micro.ts [--filter REGEX]
//
// Quiver parts are skipped with a message when mod.ts or its kernels are not there yet; a peer
// that is not installed (scripts/setup-bench.sh) is skipped likewise.
import { barplot, bench, do_not_optimize, group, run, summary } from "mitata";
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateClustered, REPO_ROOT } from "./data.ts";

const { values: flags } = parseArgs({ options: { filter: { type: "string" } } });
const require = createRequire(join(REPO_ROOT, "bench", "peers", "package.json"));
const note = (message: string) => console.log(`# ${message}`);

/** Bytes each named benchmark moves per call, for the GB/s table after the run. */
const bytesPerCall = new Map<string, number>();
const gbBench = (name: string, bytes: number, fn: () => unknown) => {
  bytesPerCall.set(name, bytes);
  return bench(name, fn);
};

// ---- What is available --------------------------------------------------------------------
// deno-lint-ignore no-explicit-any
type Any = any;
let quiver: Any = null;
try {
  quiver = await import("../mod.ts");
} catch (error) {
  note(`Quiver skipped: cannot import mod.ts (${(error as Error).message.split("\n")[0]})`);
}
const kernels = quiver?.kernels;
if (quiver && !(kernels && typeof kernels.l2sq === "function" && typeof kernels.dot === "function")) {
  note("Quiver distance kernels skipped: mod.ts does not export kernels.l2sq/kernels.dot yet");
}
const haveKernels = !!(kernels && typeof kernels.l2sq === "function" && typeof kernels.dot === "function");
function peer(name: string): Any {
  try {
    return require(name);
  } catch (error) {
    note(`${name} skipped: ${(error as Error).message.split("\n")[0]} (run scripts/setup-bench.sh)`);
    return null;
  }
}
const hnswlib = peer("hnswlib-node");
const usearch = peer("usearch");

// ---- Memory bandwidth ---------------------------------------------------------------------
// 128 MiB per buffer: far past the last-level cache, so these stream from DRAM.
const BIG = 128 * 2 ** 20;
const bigA = new Float32Array(BIG / 4).fill(1);
const bigB = new Float32Array(BIG / 4).fill(1);
const bufA = Buffer.from(bigA.buffer), bufB = Buffer.from(bigB.buffer);
const dstC = new Float32Array(BIG / 4);
group("memory bandwidth (128 MiB buffers)", () => {
  gbBench("read: JS sum loop over Float32Array", BIG, () => {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let i = 0; i < bigA.length; i += 4) {
      s0 += bigA[i]; s1 += bigA[i + 1]; s2 += bigA[i + 2]; s3 += bigA[i + 3];
    }
    return s0 + s1 + s2 + s3;
  });
  gbBench("read: native memcmp of two buffers (Buffer.compare)", 2 * BIG, () => Buffer.compare(bufA, bufB));
  gbBench("copy: native memcpy (TypedArray.set), read+write", 2 * BIG, () => dstC.set(bigA));
});

// ---- One trivial FFI call -----------------------------------------------------------------
const { dlopen } = await import("bun:ffi");
// abs() does no work and no system call, so its time is the FFI crossing itself.
const libc = dlopen("libc.so.6", { abs: { args: ["i32"], returns: "i32" } });
const tiny1 = new Float32Array([1]), tiny2 = new Float32Array([2]);
group("one trivial FFI call", () => {
  let n = 0;
  bench("bun:ffi libc abs(i32)", () => libc.symbols.abs(n++ & 0xffff));
  if (haveKernels) bench("quiver kernels.dot on 1-dim vectors (FFI + argument checks)", () => kernels.dot(tiny1, tiny2));
});

// ---- Distance kernels ---------------------------------------------------------------------
if (haveKernels) {
  note(`Quiver SIMD level chosen at run time: ${kernels.info?.().level ?? "(kernels.info missing)"}`);
  for (const d of [128, 768, 1536]) {
    const a = new Float32Array(d).map((_, i) => Math.sin(i));
    const b = new Float32Array(d).map((_, i) => Math.cos(i));
    barplot(() => {
      group(`distance kernels, d=${d} (both vectors in L1)`, () => {
        gbBench(`quiver l2sq d=${d}`, 8 * d, () => kernels.l2sq(a, b));
        gbBench(`quiver dot d=${d}`, 8 * d, () => kernels.dot(a, b));
        if (typeof kernels.l2sqI8 === "function") {
          // i8 storage's kernel on coded vectors: d bytes of codes each, plus 16 bytes of terms.
          const ca = kernels.encodeI8(a);
          const cb = kernels.encodeI8(b);
          gbBench(`quiver l2sq i8 d=${d}`, 2 * (d + 16), () => kernels.l2sqI8(ca, cb, d));
        }
        gbBench(`JS loop l2sq d=${d}`, 8 * d, () => {
          let s = 0;
          for (let i = 0; i < d; i++) {
            const t = a[i] - b[i];
            s += t * t;
          }
          return s;
        });
      });
    });
  }
}

// ---- Index operations -----------------------------------------------------------------------
interface Lib {
  name: string;
  add(key: number, v: Float32Array): void;
  search(q: Float32Array, k: number): unknown;
  batch?(qs: Float32Array, k: number): unknown;
}

const M = 16, EFC = 200, EF = 64, K = 10;
function libraries(d: number, capacity: number): Lib[] {
  const out: Lib[] = [];
  if (quiver?.Index) {
    const idx = new quiver.Index({ dimensions: d, metric: "l2", m: M, efConstruction: EFC, ef: EF, seed: 1 });
    out.push({
      name: "quiver",
      add: (key, v) => idx.add(key, v),
      search: (q, k) => idx.search(q, k, { ef: EF }),
      batch: (qs, k) => idx.searchBatch(qs, k, { ef: EF, threads: 2 }),
    });
  }
  if (usearch) {
    const idx = new usearch.Index({ dimensions: d, metric: "l2sq", connectivity: M, expansion_add: EFC, expansion_search: EF });
    out.push({
      name: "usearch",
      add: (key, v) => idx.add(BigInt(key), v),
      search: (q, k) => idx.search(q, k, 1),
      batch: (qs, k) => idx.search(qs, k, 2),
    });
  }
  if (hnswlib) {
    const idx = new hnswlib.HierarchicalNSW("l2", d);
    idx.initIndex(capacity, M, EFC, 1);
    idx.setEf(EF);
    out.push({
      name: "hnswlib-node",
      add: (key, v) => {
        if (idx.getCurrentCount() >= idx.getMaxElements()) idx.resizeIndex(2 * idx.getMaxElements());
        idx.addPoint(Array.from(v), key);
      },
      // The array conversion is what a JS caller of hnswlib-node pays per query.
      search: (q, k) => idx.searchKnn(Array.from(q), k),
    });
  }
  return out;
}

/** Builds one index per library from a clustered set and returns them with its queries. */
function filled(count: number, d: number): { libs: Lib[]; queries: Float32Array; nq: number } {
  const data = generateClustered({ kind: "clustered", count, dimensions: d, queryCount: 1000, seed: 7 });
  const libs = libraries(d, count + 1);
  for (const lib of libs) {
    const start = performance.now();
    for (let i = 0; i < count; i++) lib.add(i, data.base.subarray(i * d, (i + 1) * d));
    note(`${lib.name}: built ${count} x ${d} one add at a time in ${((performance.now() - start) / 1000).toFixed(2)} s`);
  }
  return { libs, queries: data.queries, nq: data.queryCount };
}

{
  // Single add into a growing index: keys keep increasing, vectors cycle through a pool.
  const d = 128, pool = 20000;
  const data = generateClustered({ kind: "clustered", count: pool, dimensions: d, queryCount: 1, seed: 3 });
  const libs = libraries(d, 100000);
  summary(() => {
    group(`single add, d=${d}, M=${M}, efConstruction=${EFC} (index grows while measured)`, () => {
      for (const lib of libs) {
        let key = 0;
        bench(`${lib.name} add`, () => {
          const row = key % pool;
          lib.add(key++, data.base.subarray(row * d, (row + 1) * d));
        });
      }
    });
  });
}

for (const [count, d] of [[1000, 16], [10000, 128]] as const) {
  const { libs, queries, nq } = filled(count, d);
  summary(() => {
    group(`single search, ${count} x ${d}, k=${K}, ef=${EF}, one thread`, () => {
      for (const lib of libs) {
        let i = 0;
        bench(`${lib.name} search (${count}x${d})`, () => {
          const q = i++ % nq;
          do_not_optimize(lib.search(queries.subarray(q * d, (q + 1) * d), K));
        });
      }
    });
  });
  if (count === 10000) {
    summary(() => {
      group(`batch search, ${nq} queries on ${count} x ${d}, k=${K}, ef=${EF}, 2 threads`, () => {
        for (const lib of libs) {
          if (!lib.batch) {
            note(`${lib.name}: no multi-threaded batch search API; batch row skipped`);
            continue;
          }
          bench(`${lib.name} batch of ${nq} (${count}x${d})`, () => do_not_optimize(lib.batch!(queries, K)));
        }
      });
    });
  }
}

note(`machine: ${cpus()[0]?.model ?? "unknown"}, ${cpus().length} cores; bun ${Bun.version}`);
const result = await run({ colors: !!process.stdout.isTTY, ...(flags.filter ? { filter: new RegExp(flags.filter) } : {}) });

// ---- Derived throughput -------------------------------------------------------------------
console.log("\nthroughput (bytes moved per call / mean time):");
for (const trial of result.benchmarks as Any[]) {
  for (const r of trial.runs as Any[]) {
    const bytes = bytesPerCall.get(r.name);
    if (!bytes || !r.stats) continue;
    console.log(`  ${r.name.padEnd(56)} ${(bytes / r.stats.avg).toFixed(2).padStart(8)} GB/s`);
  }
}
