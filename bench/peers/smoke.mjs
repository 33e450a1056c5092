// Checks that each peer library loads and answers a tiny search correctly in the runtime that
// runs this file (plain JS so both `bun` and `node` can run it). Usage: smoke.mjs [library...]
// Exits non-zero naming every library that failed.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const runtime = typeof Bun !== "undefined" ? `bun ${Bun.version}` : `node ${process.version}`;
const d = 8, n = 200, k = 3;
const data = new Float32Array(n * d);
let seed = 1;
for (let i = 0; i < data.length; i++) {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; // LCG: distinct rows, unlike i*c mod m.
  data[i] = seed / 2 ** 32;
}
const row = (i) => data.subarray(i * d, (i + 1) * d);

const checks = {
  "hnswlib-node": () => {
    const { HierarchicalNSW } = require("hnswlib-node");
    const index = new HierarchicalNSW("l2", d);
    index.initIndex(n, 16, 100, 1);
    for (let i = 0; i < n; i++) index.addPoint(Array.from(row(i)), i);
    index.setEf(50);
    return index.searchKnn(Array.from(row(7)), k).neighbors[0];
  },
  "hnswlib-node-native": () => {
    const { HierarchicalNSW } = require("./.hnswlib-native/hnswlib-node/build/Release/addon.node");
    const index = new HierarchicalNSW("l2", d);
    index.initIndex(n, 16, 100, 1);
    for (let i = 0; i < n; i++) index.addPoint(Array.from(row(i)), i);
    index.setEf(50);
    return index.searchKnn(Array.from(row(7)), k).neighbors[0];
  },
  usearch: () => {
    const usearch = require("usearch");
    const index = new usearch.Index({ dimensions: d, metric: "l2sq", connectivity: 16, expansion_add: 100, expansion_search: 50 });
    const keys = new BigUint64Array(n);
    for (let i = 0; i < n; i++) keys[i] = BigInt(i);
    index.add(keys, data, 2);
    const batch = index.search(data.subarray(0, 4 * d), k, 2);
    if (Number(batch.keys[3 * k]) !== 3) throw new Error(`batch search: query 3 found ${batch.keys[3 * k]} first`);
    return Number(index.search(row(7), k, 1).keys[0]);
  },
};

const wanted = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(checks);
const failed = [];
for (const name of wanted) {
  try {
    const nearest = checks[name]();
    if (nearest !== 7) throw new Error(`nearest neighbour of vector 7 is ${nearest}, expected 7`);
    console.log(`smoke: ${name} works under ${runtime}`);
  } catch (error) {
    console.log(`smoke: ${name} FAILED under ${runtime}: ${error?.message ?? error}`);
    failed.push(name);
  }
}
process.exit(failed.length === 0 ? 0 : 1);
