/**
 * Records from many Workers on one index: two writers adding string-id records with metadata
 * (batches and single adds), a flipper updating metadata, and two readers running filtered
 * searches, counts and record reads on the live index and in snapshots (fixtures/records_worker.ts
 * checks what each read may see). Afterwards, exact post-conditions: every writer's records
 * with their metadata, the flipper's final parities, counts by filter, the integrity walk and the
 * safety counters.
 */
import { Index } from "../mod.ts";
import { assert, assertEquals, assertHealthy, envFlag, seedFromEnv, test } from "./harness.ts";
import { d, flipped, vectorOf } from "./fixtures/records_worker.ts";

const soak = !!envFlag("QUIVER_SOAK");
const script = new URL("./fixtures/records_worker.ts", import.meta.url);

test("records workers: writers, a metadata flipper and filtered readers on one index, exact afterwards", async () => {
  const seed = seedFromEnv(7301);
  using index = new Index({ dimensions: d, m: 8, efConstruction: 48, indexes: { lang: "keyword", year: "number" } });
  const ids = Array.from({ length: flipped }, (_, i) => `u-${i}`);
  const vectors = new Float32Array(flipped * d);
  ids.forEach((_, i) => vectors.set(vectorOf(-1 - i, d), i * d));
  index.add(ids, vectors, { metadata: ids.map(() => ({ lang: "even", flips: 0 })) });
  const stop = new SharedArrayBuffer(4);
  const roles = [["writer", 0], ["writer", 1], ["flipper", 0], ["reader", 0], ["reader", 1]] as const;
  const workers: Worker[] = [];
  try {
    const results = roles.map(([role, j], n) => {
      const worker = new Worker(script, { type: "module" });
      workers.push(worker);
      return new Promise<Record<string, number>>((resolve, reject) => {
        worker.onerror = (event: ErrorEvent) => {
          event.preventDefault?.();
          reject(new Error(`${role} ${j} crashed: ${event.message}`));
        };
        worker.onmessage = ({ data }: MessageEvent) => {
          if (data === "ready") worker.postMessage({ handle: index.handle, role, j, stop, seed: seed + n });
          else if (data.error) reject(new Error(`${role} ${j}: ${data.error}`));
          else resolve(data.done);
        };
      });
    });
    // Every failure surfaces at once; otherwise they run for a while, then stop.
    const all = Promise.all(results);
    const running = new Promise((resolve) => setTimeout(resolve, soak ? 60_000 : 2500));
    await Promise.race([all, running]);
    Atomics.store(new Int32Array(stop), 0, 1);
    const [w0, w1, flipper, r0, r1] = await all;
    console.log(`records workers: writers ${w0.added} + ${w1.added} records, ${flipper.ops} metadata updates, readers ${r0.ops} + ${r1.ops} rounds`);
    assert(w0.added > 0 && w1.added > 0 && flipper.ops > 0 && r0.ops > 0 && r1.ops > 0, "a Worker did nothing");
    // Exact post-conditions.
    assertEquals(index.size, flipped + w0.added + w1.added);
    assertEquals(index.count({ lang: "w0" }), w0.added);
    assertEquals(index.count({ lang: "w1" }), w1.added);
    assertEquals(index.count({ lang: "even" }), flipper.even);
    assertEquals(index.count({ lang: "odd" }), flipped - flipper.even);
    for (const [j, added] of [[0, w0.added], [1, w1.added]]) {
      for (let i = 0; i < added; i += Math.max(1, Math.floor(added / 200))) {
        const r = index.getRecord(`w${j}-${i}`);
        assertEquals(r?.metadata, { lang: `w${j}`, year: i }, `w${j}-${i}`);
        assertEquals(r?.vector, vectorOf(j * 1_000_000 + i, d), `w${j}-${i} vector`);
      }
      assertEquals(index.count({ lang: `w${j}`, year: { $gte: added - 10 } }), Math.min(10, added));
    }
    for (let i = 0; i < flipped; i++) {
      const m = index.getRecord(`u-${i}`)!.metadata!;
      assertEquals(m.lang, (m.flips as number) % 2 === 0 ? "even" : "odd", `u-${i}`);
    }
    assertHealthy(index);
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
    for (const worker of workers) worker.terminate();
  }
}, soak ? 600_000 : 60_000);
