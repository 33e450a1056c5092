/**
 * The quick start's main job: build an index from a real data set (Fashion-MNIST, 60,000 x 784,
 * from the Debian package `dataset-fashion-mnist` when installed; otherwise a generated
 * clustered set), search it, and print size, build time, recall@10 against brute force, and
 * queries per second.   Run: bun examples/demo.ts  (or: deno run -A examples/demo.ts)
 */
import { Index, kernels } from "../mod.ts";
import { readIdx } from "../formats.ts";
import { existsSync } from "node:fs";

const dir = "/usr/share/datasets/fashion-mnist";

function readImages(path: string): { data: Float32Array; count: number; dims: number } {
  const { data, count, dimensions } = readIdx(path);
  return { data, count, dims: dimensions };
}

function clustered(n: number, d: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const centers = Array.from({ length: 64 }, () => Float32Array.from({ length: d }, () => gauss() * 3));
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const c = centers[Math.floor(rand() * centers.length)];
    for (let j = 0; j < d; j++) out[i * d + j] = c[j] + gauss();
  }
  return out;
}

function load() {
  if (existsSync(`${dir}/train-images-idx3-ubyte.gz`)) {
    const base = readImages(`${dir}/train-images-idx3-ubyte.gz`);
    const queries = readImages(`${dir}/t10k-images-idx3-ubyte.gz`);
    return { name: "fashion-mnist-784-euclidean", base: base.data, queries: queries.data, dims: base.dims };
  }
  const dims = 128;
  return { name: "clustered-50000x128 (generated: install dataset-fashion-mnist for the real set)", base: clustered(50_000, dims, 1), queries: clustered(2_000, dims, 2), dims };
}

function exactTop(base: Float32Array, dims: number, q: Float32Array, k: number): number[] {
  const n = base.length / dims;
  const best: { d: number; i: number }[] = [];
  for (let i = 0; i < n; i++) {
    let d = 0;
    const o = i * dims;
    for (let j = 0; j < dims; j++) {
      const t = base[o + j] - q[j];
      d += t * t;
    }
    if (best.length < k || d < best[best.length - 1].d) {
      best.push({ d, i });
      best.sort((a, b) => a.d - b.d);
      if (best.length > k) best.pop();
    }
  }
  return best.map((b) => b.i);
}

const set = load();
const n = set.base.length / set.dims;
const nq = set.queries.length / set.dims;
console.log(`data set: ${set.name}: ${n} vectors, ${nq} queries, ${set.dims} dimensions`);
console.log(`kernels: ${kernels.info().level} (${kernels.info().runtime})`);

using index = new Index({ dimensions: set.dims, metric: "l2", m: 16, efConstruction: 128 });
const keys = new BigUint64Array(n).map((_, i) => BigInt(i));
let t0 = performance.now();
index.add(keys, set.base, { threads: 2 });
const buildSeconds = (performance.now() - t0) / 1000;
console.log(`built: size ${index.size} in ${buildSeconds.toFixed(2)} s (2 threads, M=16, efConstruction=128)`);

const k = 10;
const checked = 100;
const truth = Array.from({ length: checked }, (_, i) => exactTop(set.base, set.dims, set.queries.subarray(i * set.dims, (i + 1) * set.dims), k));
for (const ef of [32, 64, 128]) {
  let hits = 0;
  for (let i = 0; i < checked; i++) {
    const r = index.search(set.queries.subarray(i * set.dims, (i + 1) * set.dims), k, { ef });
    for (const key of r.keys) if (truth[i].includes(Number(key))) hits++;
  }
  t0 = performance.now();
  for (let i = 0; i < nq; i++) index.search(set.queries.subarray(i * set.dims, (i + 1) * set.dims), k, { ef });
  const qps = nq / ((performance.now() - t0) / 1000);
  console.log(`ef=${String(ef).padStart(3)}: recall@10 ${(hits / (checked * k)).toFixed(3)} (vs brute force, ${checked} queries), ${qps.toFixed(0)} queries/s (1 thread)`);
}
t0 = performance.now();
index.searchBatch(set.queries, k, { ef: 64, threads: 2 });
console.log(`batch: ${(nq / ((performance.now() - t0) / 1000)).toFixed(0)} queries/s (searchBatch, 2 threads, ef=64)`);
