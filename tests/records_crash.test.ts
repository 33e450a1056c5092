/**
 * Records survive SIGKILL: a child (fixtures/records_child.ts) runs the seeded stream of record
 * operations of fixtures/records_ops.ts (adds and batch adds with string and numeric ids and
 * metadata, metadata updates, removes, deleteMany, checkpoints, reopens) against a persistent
 * index, acknowledging each call after it returns; this spec kills it after a random number of
 * acknowledgements, reopens the index and checks every id of the pool against the model of the
 * acknowledged operations: present or absent, its vector bit for bit, its metadata, and counts by
 * filter (so the field indexes were rebuilt too). The one operation in flight may have applied
 * or not, id by id. One index is carried across all rounds, so recovery of recovered state is
 * tested as well. QUIVER_SEED replays the op stream (kill timing is real time); QUIVER_SOAK=1
 * runs 200 kills.
 */
import { type Filter, type Id, Index } from "../mod.ts";
import { matches } from "../src/records/reference.ts";
import { assert, assertEquals, envFlag, killChildren, runtime, seedFromEnv, spawnRuntime, test } from "./harness.ts";
import { makeTempDir, removeDir, rng } from "./fixtures/util.ts";
import { crashDimensions, crashIndexes, effects, idText, type Model, type ModelRecord, opAt, opVector, poolId, poolSize } from "./fixtures/records_ops.ts";

const soak = envFlag("QUIVER_SOAK") === "1";
const kills = soak ? 200 : 12;
const child = new URL("./fixtures/records_child.ts", import.meta.url).pathname;

const reference = (filter: Filter, id: Id, metadata: Record<string, unknown> | undefined) => matches(filter, { id, metadata });
const json = (m: unknown) => JSON.stringify(m ?? null);
const filters: Filter[] = [{ lang: "en" }, { year: { $gte: 2010 } }, { tags: { $in: ["a", "é"] } }, { score: { $lt: 0 } }, { lang: { $exists: false } }, {}];

/** Whether the index holds `expected` (a record or absent) for `id`. */
function holds(index: Index, seed: number, id: Id, expected: ModelRecord | undefined): boolean {
  const got = index.getRecord(id);
  if (expected === undefined) return got === undefined;
  if (got === undefined) return false;
  const vector = opVector(seed, expected.op, expected.item);
  return got.vector.every((x, j) => x === vector[j]) && json(got.metadata) === json(JSON.parse(json(expected.metadata)));
}

/**
 * Checks the index against the model, where the ids of `inFlight` may instead hold what the
 * in-flight op makes of them; resolves those in the model. Returns the misses.
 */
function check(index: Index, seed: number, model: Model, inFlight: Map<string, { id: Id; record: ModelRecord | undefined }>): string[] {
  const misses: string[] = [];
  for (let j = 0; j < poolSize; j++) {
    const id = poolId(j);
    const text = idText(id);
    const before = model.get(text)?.record;
    if (holds(index, seed, id, before)) continue;
    const after = inFlight.get(text);
    if (after !== undefined && holds(index, seed, id, after.record)) {
      if (after.record === undefined) model.delete(text);
      else model.set(text, { id, record: after.record });
      continue;
    }
    const got = index.getRecord(id);
    misses.push(`${text}: expected ${before ? `op ${before.op}.${before.item} ${json(before.metadata)}` : "absent"}, found ${got ? json(got.metadata) : "absent"}`);
  }
  if (index.size !== model.size) misses.push(`size ${index.size}, model ${model.size}`);
  for (const filter of filters) {
    const want = [...model.values()].filter(({ id, record }) => reference(filter, id, JSON.parse(json(record.metadata)) ?? undefined)).length;
    const count = index.count(filter);
    if (count !== want) misses.push(`count ${JSON.stringify(filter)}: ${count}, model ${want}`);
  }
  if (!index.verify().ok) misses.push("verify() failed");
  return misses;
}

const open = (path: string) => Index.open(path, { dimensions: crashDimensions, m: 8, efConstruction: 32, indexes: { ...crashIndexes } });

test(`records crash: SIGKILL at random moments loses no acknowledged record, metadata or indexed value (${kills} kills)`, async () => {
  const seed = seedFromEnv(Date.now() % 1_000_000);
  console.log(`records crash (${runtime}): QUIVER_SEED=${seed}`);
  const plan = rng(seed ^ 0x5bd1);
  const dir = makeTempDir("quiver-records-crash-");
  const path = `${dir}/r.qv`;
  const model: Model = new Map();
  let next = 0;
  let acked = 0;
  let applied = 0;
  try {
    for (let round = 0; round < kills; round++) {
      const proc = spawnRuntime(child, [path, String(seed), String(next)]);
      const target = 3 + Math.floor(plan() * 60);
      let lastAck = next - 1;
      let begun = -1;
      let killed = false;
      for (;;) {
        const line = await proc.nextLine();
        if (line === null) break;
        if (line.startsWith("ack ")) lastAck = Number(line.slice(4));
        else if (line.startsWith("begin ")) begun = Number(line.split(" ")[1]);
        else if (line.startsWith("open ") && target < 5 && !killed) {
          // Some kills land right after the open: in the middle of the first writes after recovery.
          proc.kill("SIGKILL");
          killed = true;
        }
        if (!killed && lastAck - next + 1 >= target) {
          proc.kill("SIGKILL");
          killed = true;
        }
      }
      proc.kill("SIGKILL");
      const status = await proc.exited;
      assert(status.signal !== null, `the child exited by itself (${JSON.stringify(status)}): ${await proc.stderr}`);
      // The acknowledged ops, into the model; the one in flight, as an alternative per id.
      for (let i = next; i <= lastAck; i++) {
        for (const [text, { id, record }] of effects(opAt(seed, i), i, model, reference)) {
          if (record === undefined) model.delete(text);
          else model.set(text, { id, record });
        }
      }
      acked += lastAck - next + 1;
      const inFlight = begun === lastAck + 1 ? effects(opAt(seed, begun), begun, model, reference) : new Map();
      {
        using index = open(path);
        const misses = check(index, seed, model, inFlight);
        assertEquals(misses.slice(0, 5), [], `round ${round} (QUIVER_SEED=${seed}), ops ${next}..${lastAck}, in flight ${begun === lastAck + 1 ? `${begun} ${opAt(seed, begun).kind}` : "none"}`);
        if ([...inFlight].some(([text, { record }]) => (model.get(text)?.record ?? undefined) === record)) applied++;
      }
      next = begun === lastAck + 1 ? begun + 1 : lastAck + 1;
    }
    console.log(`records crash (${runtime}): ${kills} kills, ${acked} acknowledged ops, ${model.size} live records at the end, in-flight ops applied ${applied} times`);
    assert(acked > kills, "the children acknowledged almost nothing");
  } finally {
    killChildren();
    removeDir(dir);
  }
}, soak ? 3600_000 : 120_000);

test("records crash: each acknowledged, unflushed record write is replayed from the log after SIGKILL", async () => {
  const dir = makeTempDir("quiver-records-die-");
  const script = new URL("./fixtures/records_die.ts", import.meta.url).pathname;
  const expected: Record<string, [Id, Record<string, unknown> | undefined][]> = {
    string: [["doc-ü", { lang: "en" }]],
    "string-bare": [["doc-ü", undefined]],
    numeric: [[7, { lang: "en" }]],
    batch: [["doc-ü", { lang: "en" }], [7, undefined]],
    update: [["doc-ü", { lang: "de" }]],
  };
  const failures: string[] = [];
  try {
    for (const [scenario, records] of Object.entries(expected)) {
      const path = `${dir}/${scenario}.qv`;
      const proc = spawnRuntime(script, [path, scenario]);
      const line = await proc.nextLine();
      await proc.exited;
      assertEquals(line, "done", `${scenario}: ${await proc.stderr}`);
      try {
        using index = Index.open(path);
        assertEquals(index.size, records.length, `${scenario}: size`);
        for (const [id, metadata] of records) assertEquals(index.getRecord(id)?.metadata, metadata, `${scenario}: ${String(id)}`);
        assertEquals(index.count({ lang: { $exists: true } }), records.filter(([, m]) => m !== undefined).length, `${scenario}: count`);
      } catch (error) {
        failures.push(`${scenario}: ${(error as Error).name}: ${(error as Error).message}`);
      }
    }
    assertEquals(failures, []);
  } finally {
    killChildren();
    removeDir(dir);
  }
});

test("records crash: the checker catches a lost, an altered and an invented record (canary)", () => {
  const dir = makeTempDir("quiver-records-canary-");
  const seed = 5;
  try {
    using index = open(`${dir}/c.qv`);
    const model: Model = new Map();
    for (let i = 0; i < 40; i++) {
      const op = opAt(seed, i);
      if (op.kind !== "add") continue;
      index.add(op.id, opVector(seed, i), op.metadata);
      model.set(idText(op.id), { id: op.id, record: { op: i, item: 0, metadata: op.metadata } });
    }
    assertEquals(check(index, seed, new Map(model), new Map()), []);
    const [first, second] = [...model.keys()];
    const lost = new Map(model);
    lost.set("s:never-added", { id: "never-added", record: { op: 0, item: 0, metadata: undefined } });
    assert(check(index, seed, lost, new Map()).length > 0, "a lost record went unnoticed");
    const altered = new Map(model);
    altered.set(first, { ...altered.get(first)!, record: { ...altered.get(first)!.record, metadata: { lang: "zz" } } });
    assert(check(index, seed, altered, new Map()).length > 0, "altered metadata went unnoticed");
    const invented = new Map(model);
    invented.delete(second);
    assert(check(index, seed, invented, new Map()).length > 0, "an invented record went unnoticed");
  } finally {
    removeDir(dir);
  }
});
