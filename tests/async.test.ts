/**
 * The async API (src/async/): Promise forms of the long calls, run by a bounded pool of Workers
 * attached to the index. Asserts outcomes and counts, never durations: the same answers as the
 * sync calls, a queue that never starts more Workers than its bound, progress that ends at the
 * total, aborts that leave exactly the acknowledged prefix of a batch, a bad batch that writes
 * nothing, inputs the caller may reuse at once, and no reference left behind after many
 * cancelled and closed calls (the native registry's counts).
 */
import { asyncIdle, asyncStart, asyncStats, ClosedError, configureAsync, Index, InvalidVectorError } from "../mod.ts";
import { assert, assertEquals, clustered, killChildren, repoPath, spawnRuntime, tempDir, test } from "./harness.ts";
import { listDir, removeDir } from "./fixtures/util.ts";

const d = 16;

function keysOf(n: number, from = 0): BigUint64Array {
  return BigUint64Array.from({ length: n }, (_, i) => BigInt(from + i));
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection, the Promise resolved");
}

test("async: addAsync, searchAsync and searchBatchAsync give the sync calls' answers", async () => {
  using index = new Index({ dimensions: d, seed: 7 });
  using twin = new Index({ dimensions: d, seed: 7 });
  const n = 3000;
  const data = clustered(n, d, 11);
  const added = await index.addAsync(keysOf(n), data, { threads: 1, chunk: n });
  twin.add(keysOf(n), data, { threads: 1 });
  assertEquals(added, n);
  assertEquals(index.size, n);
  const queries = clustered(50, d, 12);
  for (let q = 0; q < 50; q++) {
    const query = queries.subarray(q * d, (q + 1) * d);
    assertEquals(await index.searchAsync(query, 10), index.search(query, 10), `query ${q}`);
  }
  assertEquals(await index.searchBatchAsync(queries, 10), index.searchBatch(queries, 10));
  // One chunk with one thread is the sync call exactly: the same graph gives the same answers.
  assertEquals(index.searchBatch(queries, 10), twin.searchBatch(queries, 10));
  assert(index.verify().ok);
});

test("async: many concurrent searches queue onto the bounded pool", async () => {
  const before = asyncStats();
  configureAsync({ workers: 2 });
  using index = new Index({ dimensions: d });
  index.add(keysOf(2000), clustered(2000, d, 3));
  const queries = clustered(400, d, 4);
  const pending = [];
  for (let q = 0; q < 400; q++) pending.push(index.searchAsync(queries.subarray(q * d, (q + 1) * d), 5));
  const during = asyncStats();
  assert(during.queued > 0, `queued = ${during.queued}`);
  assert(during.started <= 2, `started = ${during.started}`);
  const results = await Promise.all(pending);
  for (let q = 0; q < 400; q++) assertEquals(results[q], index.search(queries.subarray(q * d, (q + 1) * d), 5));
  const after = asyncStats();
  assertEquals(after.queued, 0);
  assertEquals(after.running, 0);
  assert(after.started <= 2, `started = ${after.started}`);
  // Waiting searches of one index went to the Workers together, each still answered on its own.
  assert(after.coalesced > during.coalesced, `coalesced ${during.coalesced} -> ${after.coalesced}`);
  // asyncStart starts the whole pool, and no more. (Deno: no idle exit meanwhile; a Worker
  // started with type checking takes about a second, longer than the default idleMs.)
  configureAsync({ idleMs: Infinity });
  try {
    await asyncStart();
    assertEquals(asyncStats().started, 2);
  } finally {
    configureAsync({ idleMs: before.idleMs });
  }
});

test("async: progress is monotonic and ends at the total", async () => {
  using index = new Index({ dimensions: d });
  const n = 4000;
  const seen: number[] = [];
  await index.addAsync(keysOf(n), clustered(n, d, 5), { chunk: 256, onProgress: ({ done, total }) => {
    assertEquals(total, n);
    seen.push(done);
  } });
  assertEquals(seen[0], 0);
  assertEquals(seen[seen.length - 1], n);
  for (let i = 1; i < seen.length; i++) assert(seen[i] > seen[i - 1], `progress ${seen}`);
  // Throttled: 16 chunks report far fewer calls unless the build took seconds.
  assert(seen.length <= 17, `${seen.length} progress calls`);
});

test("async: an aborted batch keeps exactly the acknowledged prefix", async () => {
  // The abort races the Worker's chunks; a batch that finished first is retried bigger.
  let aborted = false;
  for (let attempt = 0; attempt < 4 && !aborted; attempt++) {
    using index = new Index({ dimensions: d });
    const n = 6000 << attempt;
    const controller = new AbortController();
    let last = 0;
    const promise = index.addAsync(keysOf(n), clustered(n, d, 6), {
      chunk: 200,
      signal: controller.signal,
      onProgress: ({ done }) => {
        last = done;
        if (done > 0) controller.abort();
      },
    });
    const outcome = await promise.then(() => undefined, (error: Error) => error);
    if (outcome !== undefined) {
      aborted = true;
      assertEquals(outcome.name, "AbortError");
      assert(last > 0 && last < n, `acknowledged ${last}`);
    } else {
      assertEquals(last, n);
    }
    // Either way: the first `last` keys are in, the rest are absent.
    assertEquals(index.size, last);
    for (let i = 0; i < n; i++) assertEquals(index.has(i), i < last, `key ${i}`);
    assert(index.verify().ok);
    // Aborted before it started: nothing at all.
    const before = new AbortController();
    before.abort();
    assertEquals((await rejection(index.addAsync(keysOf(10, n), clustered(10, d, 7), { signal: before.signal })) as Error).name, "AbortError");
    assertEquals(index.size, last);
  }
  assert(aborted, "no abort landed before the batch finished");
});

test("async: a bad batch writes nothing; inputs may be reused at once", async () => {
  using index = new Index({ dimensions: d });
  const data = clustered(1000, d, 8);
  data[999 * d] = NaN;
  const error = await rejection(index.addAsync(keysOf(1000), data, { chunk: 100 }));
  assert(error instanceof InvalidVectorError, String(error));
  assertEquals(index.size, 0);
  const good = clustered(1000, d, 9);
  const original = good.slice();
  const keys = keysOf(1000);
  const promise = index.addAsync(keys, good);
  good.fill(0);
  keys.fill(5n);
  await promise;
  assertEquals(index.size, 1000);
  assertEquals(Array.from(index.get(999)!), Array.from(original.subarray(999 * d)));
});

test("async: compact, backup, verify, sync, checkpoint and a full-validation open", async () => {
  const dir = tempDir();
  try {
    const path = `${dir}/a.qv`;
    {
      using index = Index.open(path, { dimensions: d });
      await index.addAsync(keysOf(2000), clustered(2000, d, 10));
      for (let i = 0; i < 500; i++) index.remove(i);
      await index.syncAsync();
      await index.compactAsync({ threads: 2 });
      assertEquals(index.stats().tombstones, 0);
      assertEquals(index.size, 1500);
      assert((await index.verifyAsync()).ok);
      await index.backupAsync(`${dir}/b.qv`);
      await index.checkpointAsync();
    }
    using reopened = await Index.openAsync(path);
    assertEquals(reopened.size, 1500);
    using copy = await Index.openAsync(`${dir}/b.qv`, { readOnly: true });
    assertEquals(copy.size, 1500);
    assertEquals((await rejection(Index.openAsync(`${dir}/missing.qv`, { create: false })) as Error).name, "NoIndexError");
  } finally {
    removeDir(dir);
  }
});

test("async: close rejects pending calls with ClosedError; nothing leaks after many", async () => {
  await asyncIdle();
  const base = asyncStats();
  for (let round = 0; round < 20; round++) {
    const index = new Index({ dimensions: d });
    index.add(keysOf(300), clustered(300, d, round));
    const controller = new AbortController();
    const pending: Promise<unknown>[] = [
      index.addAsync(keysOf(3000, 1000), clustered(3000, d, round + 100), { chunk: 256, signal: controller.signal }),
      index.searchAsync(new Float32Array(d).fill(1), 3),
      index.searchBatchAsync(clustered(20, d, round), 3),
      index.verifyAsync(),
      // Several searches: they wait together and go to a Worker coalesced.
      ...Array.from({ length: 6 }, () => index.searchAsync(new Float32Array(d).fill(2), 3)),
    ];
    if (round % 2 === 0) controller.abort();
    index.close();
    const settled = await Promise.allSettled(pending);
    for (const [i, s] of settled.entries()) {
      assert(s.status === "rejected", `round ${round} call ${i} resolved`);
      const name = (s.reason as Error).name;
      assert(name === "ClosedError" || (name === "AbortError" && i === 0), `round ${round} call ${i}: ${name}`);
    }
    assert(settled.some((s) => s.status === "rejected" && s.reason instanceof ClosedError));
  }
  await asyncIdle();
  const after = asyncStats();
  assertEquals(after.nativeIndexes, base.nativeIndexes, "indexes left open");
  assertEquals(after.nativeReferences, base.nativeReferences, "references left");
  assertEquals(after.queued, 0);
  assertEquals(after.running, 0);
});

test("async: a cancelled compaction leaves the old index; progress ends at the live count", async () => {
  const dir = tempDir();
  try {
    using index = Index.open(`${dir}/c.qv`, { dimensions: d });
    index.add(keysOf(9000), clustered(9000, d, 20));
    for (let i = 0; i < 9000; i += 3) index.remove(i);
    const before = index.stats();
    const queries = clustered(20, d, 21);
    const answers = index.searchBatch(queries, 5);
    // Aborted right after the call: the Worker has the task, native code sees the cancel word
    // before its first chunk and stops before the swap.
    const controller = new AbortController();
    const promise = index.compactAsync({ threads: 2, signal: controller.signal });
    controller.abort();
    assertEquals((await rejection(promise) as Error).name, "AbortError");
    const after = index.stats();
    assertEquals([after.tombstones, after.size, after.slots_used], [before.tombstones, before.size, before.slots_used]);
    assertEquals(index.searchBatch(queries, 5), answers);
    assert(index.verify().ok);
    const leftovers = listDir(dir).filter((f) => f.includes("~compact"));
    assertEquals(leftovers, []);
    // Not aborted: it compacts, and its last progress is the live count.
    const seen: Array<{ done: number; total: number }> = [];
    await index.compactAsync({ threads: 2, onProgress: (p) => seen.push(p) });
    assertEquals(index.stats().tombstones, 0);
    assertEquals(seen[seen.length - 1], { done: 6000, total: 6000 });
    // A backup aborted while it runs leaves no files at its path.
    const backup = new AbortController();
    const saving = index.backupAsync(`${dir}/b.qv`, { signal: backup.signal });
    backup.abort();
    assertEquals((await rejection(saving) as Error).name, "AbortError");
    assertEquals(listDir(dir).filter((f) => f.startsWith("b.qv")), []);
    const verifying = new AbortController();
    const walk = index.verifyAsync({ signal: verifying.signal });
    verifying.abort();
    assertEquals((await rejection(walk) as Error).name, "AbortError");
    await asyncIdle();
  } finally {
    removeDir(dir);
  }
});

/**
 * Settles with `promise`, or fails once `seconds` pass: a hang detector for calls that take
 * milliseconds (a lost reply leaves a Promise pending forever, and an empty event loop then
 * ends the test run without saying which), never a measure of speed.
 */
async function settlesWithin<T>(promise: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${seconds} s`)), seconds * 1000);
  });
  try {
    return await Promise.race([promise, watchdog]);
  } finally {
    clearTimeout(timer);
  }
}

test("async: asyncIdle and asyncStart settle when Workers retire while they wait (a shrink, an idle exit)", async () => {
  const before = asyncStats();
  using index = new Index({ dimensions: d });
  index.add(keysOf(3000), clustered(3000, d, 40));
  const q = clustered(1, d, 41);
  try {
    // No idle exit (Deno) until the third part, which is about it.
    configureAsync({ workers: 2, idleMs: Infinity });
    await settlesWithin(asyncStart(), 30, "asyncStart");
    await Promise.all([index.verifyAsync(), index.verifyAsync()]);
    // A drain's round trip is posted, then its Worker is retired before the reply: the retirement
    // once took the Worker's message handler, and the round trip's reply with it.
    const idle = asyncIdle();
    configureAsync({ workers: 1 });
    await settlesWithin(idle, 30, "asyncIdle across a shrink");
    assertEquals(asyncStats().started, 1);
    // A Worker retired before it is ready (the first one is busy, so the new one is chosen).
    const busy = index.verifyAsync();
    configureAsync({ workers: 2 });
    const starting = asyncStart();
    configureAsync({ workers: 1 });
    await settlesWithin(starting, 30, "asyncStart across a retirement of the Worker it waits for");
    assert((await busy).ok);
    await settlesWithin(asyncIdle(), 30, "asyncIdle after a Worker retired while starting");
    assertEquals(asyncStats().started, 1);
    // Deno: an idle Worker exits after idleMs (0 here) while the drain after its task waits.
    configureAsync({ workers: 2, idleMs: 0 });
    for (let round = 0; round < 5; round++) {
      await Promise.all([index.searchAsync(q, 3), index.verifyAsync()]);
      await settlesWithin(asyncIdle(), 30, `asyncIdle across an idle exit (round ${round})`);
    }
    // The pool still serves, the same answers as the sync call.
    assertEquals((await index.searchAsync(q, 3)).keys, index.search(q, 3).keys);
  } finally {
    configureAsync({ workers: before.workers, idleMs: before.idleMs });
  }
  await settlesWithin(asyncIdle(), 30, "asyncIdle at the end");
  assertEquals(asyncStats().queued, 0);
});

test("async: a new idleMs applies to the Workers already idle (Infinity cancels their planned exit)", async () => {
  const before = asyncStats();
  using index = new Index({ dimensions: d });
  index.add(keysOf(100), clustered(100, d, 42));
  try {
    configureAsync({ workers: 1, idleMs: 50 });
    await index.verifyAsync();
    const started = asyncStats().started;
    assertEquals(started, 1);
    // Deno's Worker planned its exit 50 ms after that task; the new value replaces the plan.
    configureAsync({ idleMs: Infinity });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assertEquals(asyncStats().started, started, "an idle Worker exited after idleMs became Infinity");
  } finally {
    configureAsync({ workers: before.workers, idleMs: before.idleMs });
  }
});

test("async: the bound counts Workers still retiring; a grow, start and shrink loop never exceeds it", async () => {
  const before = asyncStats();
  try {
    for (let round = 0; round < 16; round++) {
      configureAsync({ workers: 4 });
      void asyncStart();
      const grown = asyncStats();
      assert(grown.started + grown.retiring <= 4, `round ${round}: ${grown.started} + ${grown.retiring} Workers over 4`);
      configureAsync({ workers: 1 });
      const shrunk = asyncStats();
      // Those not idle yet (starting) retire when they are; none are started meanwhile.
      assert(shrunk.started + shrunk.retiring <= 4, `round ${round}: ${shrunk.started} + ${shrunk.retiring} Workers over 4`);
    }
    await settlesWithin(asyncIdle(), 60, "asyncIdle after the loop");
    const after = asyncStats();
    assertEquals([after.started <= 1, after.retiring], [true, 0]);
    using index = new Index({ dimensions: d });
    index.add(keysOf(50), clustered(50, d, 43));
    const q = clustered(1, d, 44);
    assertEquals((await index.searchAsync(q, 3)).keys, index.search(q, 3).keys);
  } finally {
    configureAsync({ workers: before.workers, idleMs: before.idleMs });
  }
  await settlesWithin(asyncIdle(), 60, "asyncIdle at the end");
});

test("async: a query whose constructor's species makes shared arrays is copied plainly; its neighbours are answered", async () => {
  using index = new Index({ dimensions: d });
  index.add(keysOf(200), clustered(200, d, 45));
  const queries = clustered(4, d, 46);
  const hostile = queries.slice(0, d);
  // slice() would make a SharedArrayBuffer's view, which a transfer list refuses.
  Object.defineProperty(hostile, "constructor", {
    value: { [Symbol.species]: function (n: number) { return new Float32Array(new SharedArrayBuffer(4 * n)); } },
  });
  const pending = [0, 1, 2, 3].map((i) => index.searchAsync(i === 0 ? hostile : queries.subarray(i * d, (i + 1) * d), 3));
  const results = await Promise.all(pending);
  for (let i = 0; i < 4; i++) assertEquals(results[i].keys, index.search(queries.subarray(i * d, (i + 1) * d), 3).keys, `query ${i}`);
  // The caller's array is still whole (nothing of it was transferred).
  assertEquals(hostile.length, d);
});

test("async: an idleMs beyond a timer's range never plans an exit (it once fired after 1 ms)", async () => {
  const before = asyncStats();
  using index = new Index({ dimensions: d });
  index.add(keysOf(50), clustered(50, d, 47));
  try {
    configureAsync({ workers: 1, idleMs: 2 ** 31 });
    await index.verifyAsync();
    assertEquals(asyncStats().started, 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assertEquals(asyncStats().started, 1, "the idle Worker exited");
  } finally {
    configureAsync({ workers: before.workers, idleMs: before.idleMs });
  }
});

test("async: a call a program does not await still settles before the process exits", async () => {
  const child = spawnRuntime(repoPath("tests/fixtures/async_then.ts"), []);
  try {
    const lines = [await child.nextLine(), await child.nextLine()].sort();
    assertEquals(lines, ["added 20000, size 20002", "found 2"]);
    assertEquals(await child.exited, { code: 0, signal: null });
  } finally {
    killChildren();
  }
}, 60_000);

test("async: Workers that cannot start fail the calls waiting for them, and are not restarted in a loop", async () => {
  const child = spawnRuntime(repoPath("tests/fixtures/async_nostart.ts"), []);
  try {
    // Before: Bun exited with the search pending; Deno started a Worker again and again.
    assertEquals(await child.nextLine(), "search failed to start");
    assertEquals(await child.nextLine(), "start failed to start");
    assertEquals(await child.nextLine(), "sync 2");
    assertEquals(await child.exited, { code: 0, signal: null });
  } finally {
    killChildren();
  }
}, 60_000);

test("async: a program that used the async API exits by itself (the pool holds no process open)", async () => {
  const child = spawnRuntime(repoPath("tests/fixtures/async_exit.ts"), []);
  try {
    assertEquals(await child.nextLine(), "found 2 with 1 Workers");
    assertEquals(await child.exited, { code: 0, signal: null });
  } finally {
    killChildren();
  }
}, 30_000);
