/**
 * examples/server.ts under this runtime: started on 127.0.0.1 (a free port), sent concurrent
 * adds and searches, checked (every stored vector finds itself at distance 0, /stats counts
 * them), asked to build in the background while searches keep being answered, then stopped.
 */
import { assert, assertEquals, killChildren, repoPath, spawnRuntime, test } from "./harness.ts";

const d = 8;

function vectorOf(key: number): number[] {
  return Array.from({ length: d }, (_, j) => Math.sin(key * 7.1 + j * 1.3) * 10);
}

test("server: concurrent adds and searches on 127.0.0.1, answered while a build runs", async () => {
  const child = spawnRuntime(repoPath("examples/server.ts"), ["--port", "0", "--dimensions", String(d)]);
  try {
    const line = await child.nextLine();
    const match = /^listening http:\/\/127\.0\.0\.1:(\d+)$/.exec(line ?? "");
    assert(match, `server said ${line}; stderr: ${await Promise.race([child.stderr, new Promise((r) => setTimeout(() => r("(running)"), 2000))])}`);
    const base = `http://127.0.0.1:${match[1]}`;
    const post = async (path: string, body: unknown) => {
      const response = await fetch(`${base}${path}`, { method: "POST", body: JSON.stringify(body) });
      return { status: response.status, body: await response.json() };
    };

    // 20 concurrent adds of 50 vectors each: keys 0..999.
    const adds = await Promise.all(Array.from({ length: 20 }, (_, b) => {
      const keys = Array.from({ length: 50 }, (_, i) => b * 50 + i);
      return post("/add", { keys, vectors: keys.map(vectorOf) });
    }));
    for (const a of adds) assertEquals([a.status, a.body.added], [200, 50]);
    const stats = await (await fetch(`${base}/stats`)).json();
    assertEquals(stats.size, 1000);

    // A background build of 20k more, then 100 concurrent searches while it runs.
    assertEquals((await post("/build", { count: 20_000, from: 100_000 })).status, 200);
    const keys = Array.from({ length: 100 }, (_, i) => i * 10);
    const found = await Promise.all(keys.map((key) => post("/search", { vector: vectorOf(key), k: 3 })));
    for (const [i, f] of found.entries()) {
      assertEquals(f.status, 200);
      assertEquals(f.body.keys[0], keys[i], `search for ${keys[i]}`);
      assertEquals(f.body.distances[0], 0);
    }
    // Errors are typed JSON, not crashes.
    const bad = await post("/search", { vector: [1, 2], k: 3 });
    assertEquals([bad.status, bad.body.code], [400, "DIMENSION_MISMATCH"]);

    let after = await (await fetch(`${base}/stats`)).json();
    for (let i = 0; i < 600 && after.building > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await (await fetch(`${base}/stats`)).json();
    }
    assertEquals([after.building, after.size], [0, 21_000]);
    assert(after.async.started <= after.async.workers, JSON.stringify(after.async));
  } finally {
    child.kill("SIGTERM");
    await child.exited;
    killChildren();
  }
}, 120_000);
