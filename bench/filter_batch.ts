// A filtered searchBatch against one search per query (BENCHMARKS.md, "a filtered batch in one
// native call"): bun bench/filter_batch.ts
import { Index } from "../mod.ts";
const n = 50000, d = 64, nq = 2000, k = 10;
let s = 3; const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
const data = new Float32Array(n * d).map(rnd);
const queries = new Float32Array(nq * d).map(rnd);
const ix = new Index({ dimensions: d, metric: "l2", indexes: { r: "number" } });
const keys = new BigUint64Array(n).map((_, i) => BigInt(i));
ix.add(keys, data, { metadata: Array.from({ length: n }, () => ({ r: rnd() + 0.5 })), threads: 2 });
for (const [name, filter] of [["10%", { r: { $lt: 0.1 } }], ["1%", { r: { $lt: 0.01 } }], ["50%", { r: { $lt: 0.5 } }]] as const) {
  const best = (f: () => void) => { let b = Infinity; for (let r = 0; r < 3; r++) { const t = performance.now(); f(); b = Math.min(b, performance.now() - t); } return b; };
  const loop = best(() => { for (let q = 0; q < nq; q++) ix.search(queries.subarray(q * d, q * d + d), k, { filter, ef: 64 }); });
  const b1 = best(() => ix.searchBatch(queries, k, { filter, ef: 64, threads: 1 }));
  const b2 = best(() => ix.searchBatch(queries, k, { filter, ef: 64, threads: 2 }));
  console.log(`| ${name} | ${(nq / loop * 1000).toFixed(0)} | ${(nq / b1 * 1000).toFixed(0)} | ${(nq / b2 * 1000).toFixed(0)} |`);
}
ix.close();
