/**
 * Exact duplicates stay findable: 1,000 copies of one vector, and 20 vectors x 50 copies
 * added interleaved, then an exhaustive search (k = ef = size) must return every key, and
 * verify() must report no unreachable live node (and say ok). Duplicate embeddings are common
 * (empty documents, re-ingested ones); before the fix 340 of the 1,000 copies and 50 of the
 * 20 x 50 were unreachable while verify() still said ok.
 */
import { Index } from "../mod.ts";
import { assert, assertEquals, clustered, seedFromEnv, test } from "./harness.ts";

const d = 8;
const seed = seedFromEnv(20250919);
console.log(`duplicates.test.ts seed=${seed} (replay with QUIVER_SEED=${seed})`);

function expectAllFound(index: Index, query: Float32Array, n: number): void {
  const found = index.search(query, n, { ef: n });
  const keys = new Set(Array.from(found.keys, (k) => Number(k)));
  assertEquals(keys.size, n, `exhaustive search found ${keys.size} of ${n} keys`);
}

function expectAllReachable(index: Index): void {
  const report = index.verify();
  assertEquals(Number(report.unreachable_live), 0, "unreachable live nodes");
  assert(report.ok, "verify() must say ok");
}

test("1,000 identical vectors: an exhaustive search finds every one", () => {
  using index = new Index({ dimensions: d });
  const v = new Float32Array([0.5, -1, 2, 0, 3, 1, -2, 0.25]);
  for (let key = 0; key < 1000; key++) index.add(key, v);
  expectAllReachable(index);
  expectAllFound(index, v, 1000);
});

test("20 vectors x 50 copies: every copy of every vector is found", () => {
  const distinct = 20;
  const copies = 50;
  const originals = clustered(distinct, d, seed);
  const n = distinct * copies;
  const keys = new BigUint64Array(n);
  const vectors = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    keys[i] = BigInt(i);
    vectors.set(originals.subarray((i % distinct) * d, (i % distinct + 1) * d), i * d);
  }
  for (const threads of [1, 2]) {
    using index = new Index({ dimensions: d });
    index.add(keys, vectors, { threads });
    expectAllReachable(index);
    for (let g = 0; g < distinct; g++) {
      expectAllFound(index, originals.subarray(g * d, (g + 1) * d), n);
    }
  }
});
