/**
 * Records through the native core (issue #11): string ids, metadata, filters. Every operator on a
 * known set; string ids round-trip (non-ASCII, the exact maximum, one byte more refused); id
 * conflicts; indexes fixed at creation; metadata through close/reopen, compaction, backup,
 * snapshots and the read-only open; bad filters and bad metadata give typed errors and change
 * nothing; unknown options are refused; filtered search returns k when k match and keeps
 * recall@10 >= 0.95 at 50%, 10% and 1% selectivity; and a seeded property test holds native
 * count, search and deleteMany against the JS reference (src/records/reference.ts).
 * QUIVER_SEED=<n> replays the seeded ones.
 */
import {
  type Filter,
  type Id,
  IdConflictError,
  Index,
  InvalidArgumentError,
  InvalidFilterError,
  InvalidKeyError,
  InvalidMetadataError,
  type Metadata,
  NotFoundError,
  ReadOnlyError,
} from "../mod.ts";
import { matches } from "../src/records/reference.ts";
import { assert, assertEquals, assertThrows, clustered, rng, runtime, seedFromEnv, tempDir, test } from "./harness.ts";
import { randomFilter, randomMetadata, schemaIndexes } from "./fixtures/records_gen.ts";

const d = 4;
const indexes = { lang: "keyword", year: "number", tags: "keyword", score: "number" } as const;

/** A unit-ish vector for record i (distinct, so searches have a clear order). */
function vec(i: number): Float32Array {
  return new Float32Array([Math.cos(i), Math.sin(i), (i % 7) / 7, 1]);
}

const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x));
const sortIds = (ids: Iterable<Id>) => [...ids].map((x) => (typeof x === "string" ? `s:${x}` : `n:${x}`)).sort();

/** The known set of the operator spec: ids, metadata. */
const known: [Id, Metadata | undefined][] = [
  ["en-2020", { lang: "en", year: 2020, tags: ["a", "b"], score: 1.5 }],
  ["de-2021", { lang: "de", year: 2021, tags: ["b"], score: -2 }],
  ["fr-none", { lang: "fr", tags: [] }],
  [1, { lang: "en", year: [1999, 2024], score: 0 }],
  [2, { year: 2020, title: "no lang" }],
  [3, undefined],
  ["日本語-id", { lang: "日本語", tags: ["c", "a"], score: [3, 4] }],
  [2n ** 63n + 5n, { lang: "", year: 2022 }],
];

function knownIndex(): Index {
  const index = new Index({ dimensions: d, indexes: { ...indexes } });
  known.forEach(([id, metadata], i) => index.add(id, vec(i), metadata));
  return index;
}

/** What `search` over everything and `count` say matches `filter`, as sorted id texts. */
function matching(index: Index, filter: Filter): string[] {
  const all = index.search(vec(0), 64, { filter, ef: 64 });
  assertEquals(index.count(filter), all.ids.length, `count vs search of ${show(filter)}`);
  return sortIds(all.ids);
}

test("records: every operator selects exactly the records it should", () => {
  using index = knownIndex();
  assertEquals(index.size, known.length);
  const cases: [Filter, Id[]][] = [
    [{}, known.map(([id]) => id)],
    [{ lang: "en" }, ["en-2020", 1]],
    [{ lang: { $eq: "日本語" } }, ["日本語-id"]],
    [{ lang: "" }, [2n ** 63n + 5n]],
    [{ lang: { $ne: "en" } }, ["de-2021", "fr-none", 2, 3, "日本語-id", 2n ** 63n + 5n]],
    [{ lang: { $in: ["de", "fr", "xx"] } }, ["de-2021", "fr-none"]],
    [{ lang: { $nin: ["en", "de"] } }, ["fr-none", 2, 3, "日本語-id", 2n ** 63n + 5n]],
    [{ lang: { $in: [] } }, []],
    [{ lang: { $nin: [] } }, known.map(([id]) => id)],
    [{ tags: "a" }, ["en-2020", "日本語-id"]],
    [{ tags: { $in: ["b", "c"] } }, ["en-2020", "de-2021", "日本語-id"]],
    [{ tags: { $nin: ["a"] } }, ["de-2021", "fr-none", 1, 2, 3, 2n ** 63n + 5n]],
    [{ tags: { $exists: true } }, ["en-2020", "de-2021", "日本語-id"]], // [] has no values
    [{ tags: { $exists: false } }, ["fr-none", 1, 2, 3, 2n ** 63n + 5n]],
    [{ year: 2020 }, ["en-2020", 2]],
    [{ year: { $ne: 2020 } }, ["de-2021", "fr-none", 1, 3, "日本語-id", 2n ** 63n + 5n]],
    [{ year: { $gt: 2021 } }, [1, 2n ** 63n + 5n]], // 1 has 2024
    [{ year: { $gte: 2021 } }, ["de-2021", 1, 2n ** 63n + 5n]],
    [{ year: { $lt: 2020 } }, [1]], // 1999
    [{ year: { $lte: 2020 } }, ["en-2020", 1, 2]],
    [{ year: { $gt: 2000, $lt: 2022 } }, ["en-2020", "de-2021", 1, 2]], // 1: 2024 > 2000 and 1999 < 2022
    [{ year: { $in: [2021, 2022, 1] } }, ["de-2021", 2n ** 63n + 5n]],
    [{ year: { $nin: [2020] } }, ["de-2021", "fr-none", 1, 3, "日本語-id", 2n ** 63n + 5n]],
    [{ year: { $exists: true } }, ["en-2020", "de-2021", 1, 2, 2n ** 63n + 5n]],
    [{ score: { $gte: 0 } }, ["en-2020", 1, "日本語-id"]],
    [{ score: -0 }, [1]],
    [{ score: { $lt: 0 } }, ["de-2021"]],
    [{ year: { $not: { $gte: 2021 } } }, ["en-2020", "fr-none", 2, 3, "日本語-id"]],
    [{ lang: { $not: "en" } }, ["de-2021", "fr-none", 2, 3, "日本語-id", 2n ** 63n + 5n]],
    [{ $and: [{ lang: "en" }, { year: 2020 }] }, ["en-2020"]],
    [{ lang: "en", year: { $gt: 2022 } }, [1]],
    [{ $or: [{ lang: "de" }, { year: 2022 }, { tags: "c" }] }, ["de-2021", "日本語-id", 2n ** 63n + 5n]],
    [{ $not: { $or: [{ lang: "en" }, { lang: { $exists: false } }] } }, ["de-2021", "fr-none", "日本語-id", 2n ** 63n + 5n]],
    [{ allow: ["en-2020", 3, "missing", 99] }, ["en-2020", 3]],
    [{ allow: [2n ** 63n + 5n, "日本語-id"] }, ["日本語-id", 2n ** 63n + 5n]],
    [{ allow: BigUint64Array.of(1n, 2n) }, [1, 2]],
    [{ allow: [] }, []],
    [{ allow: ["en-2020", 1, 2], lang: "en" }, ["en-2020", 1]],
    [{ $or: [{ allow: [3] }, { year: 2021 }] }, ["de-2021", 3]],
  ];
  for (const [filter, expected] of cases) {
    const text = JSON.stringify(filter, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
    assertEquals(matching(index, filter), sortIds(expected), text);
    // The reference agrees (it is the oracle of the property test below).
    const reference = known.filter(([id, metadata]) => matches(filter, { id, metadata: metadata as Record<string, unknown> | undefined })).map(([id]) => id);
    assertEquals(sortIds(reference), sortIds(expected), `reference: ${text}`);
  }
});

test("records: search gives ids in the form they were added, and metadata when asked", () => {
  using index = knownIndex();
  const plain = index.search(vec(0), known.length);
  assertEquals(sortIds(plain.ids), sortIds(known.map(([id]) => id)));
  assertEquals(plain.metadata, undefined);
  assertEquals(plain.ids[0], "en-2020");
  for (let i = 0; i < plain.ids.length; i++) {
    const id = plain.ids[i];
    // Each id's key is the result's key; numeric ids are numbers when safe, bigints above.
    const at = known.findIndex(([k]) => k === id);
    assert(at >= 0, `unknown id ${String(id)}`);
    if (typeof id !== "string") assertEquals(BigInt(id), plain.keys[i]);
  }
  const withMeta = index.search(vec(1), 3, { includeMetadata: true, filter: { lang: { $exists: true } } });
  assertEquals(withMeta.ids.length, 3);
  for (let i = 0; i < 3; i++) {
    const [, metadata] = known.find(([id]) => id === withMeta.ids[i])!;
    assertEquals(withMeta.metadata![i], metadata);
  }
  // searchBatch: ids per query; filtered and with metadata too.
  const queries = new Float32Array([...vec(0), ...vec(3)]);
  const batch = index.searchBatch(queries, 2, { includeMetadata: true });
  assertEquals(batch.ids.slice(0, 2), index.search(vec(0), 2).ids);
  assertEquals(batch.ids.slice(2, 4), index.search(vec(3), 2).ids);
  assertEquals(batch.metadata![2], known[3][1]);
  const filtered = index.searchBatch(queries, 3, { filter: { lang: "en" } });
  assertEquals([...filtered.counts], [2, 2]);
  assertEquals(sortIds(filtered.ids.slice(0, 2)), sortIds(["en-2020", 1]));
  assertEquals(filtered.ids[2], undefined);
  // keys() stays the u64 keys; ids() gives the ids.
  assertEquals(index.keys().length, known.length);
  assertEquals(sortIds(index.ids()), sortIds(known.map(([id]) => id)));
});

test("records: string ids round-trip: non-ASCII, emoji, the 1024-byte maximum; 1025 bytes and bad strings refused", () => {
  using index = new Index({ dimensions: d });
  const max = "é".repeat(511) + "ab"; // 1024 bytes
  assertEquals(new TextEncoder().encode(max).length, 1024);
  const ids = ["ascii", "日本語のドキュメント", "emoji 😀🎉", "a\u0000b", " ", max, "x".repeat(1024)];
  ids.forEach((id, i) => index.add(id, vec(i), { n: i }));
  assertEquals(index.size, ids.length);
  ids.forEach((id, i) => {
    const record = index.getRecord(id);
    assert(record !== undefined, `getRecord(${JSON.stringify(id.slice(0, 20))})`);
    assertEquals(record.id, id);
    assertEquals(record.vector, vec(i));
    assertEquals(record.metadata, { n: i });
    assert(index.has(id));
    assertEquals(index.get(id), vec(i));
    assertEquals(index.search(vec(i), 1).ids, [id]);
  });
  assertEquals(sortIds(index.ids()), sortIds(ids));
  // One byte more, empty, a lone surrogate: InvalidKeyError, nothing written.
  const before = index.size;
  for (const bad of [max + "c", "y".repeat(1025), "", "\ud83d", "ok\udc00"]) {
    assertThrows(() => index.add(bad, vec(1)), InvalidKeyError, "INVALID_KEY");
    assertThrows(() => index.add(bad, vec(1), { a: 1 }), InvalidKeyError, "INVALID_KEY");
    assertThrows(() => index.add(["fine", bad], new Float32Array(2 * d).fill(1)), InvalidKeyError, "INVALID_KEY");
    assertThrows(() => index.getRecord(bad), InvalidKeyError);
    assertThrows(() => index.remove(bad), InvalidKeyError);
    assertThrows(() => index.update(bad, { metadata: {} }), InvalidKeyError);
  }
  assertEquals(index.size, before);
  assertEquals(index.has("fine"), false);
  // Near-miss ids are other records: absent.
  assertEquals(index.getRecord("Ascii"), undefined);
  assertEquals(index.getRecord(max.slice(0, -1)), undefined);
  assertEquals(index.has("ascii "), false);
  // Upsert by string id replaces vector and metadata; remove is by id.
  index.add("ascii", vec(40), { n: 40 });
  assertEquals(index.size, ids.length);
  assertEquals(index.getRecord("ascii")?.metadata, { n: 40 });
  assertEquals(index.remove("ascii"), true);
  assertEquals(index.remove("ascii"), false);
  assertEquals(index.getRecord("ascii"), undefined);
  assertEquals(index.size, ids.length - 1);
  assertEquals(index.verify().ok, true);
});

test("records: a numeric id over a string id's key, or the reverse, is IdConflictError and changes nothing", () => {
  using index = new Index({ dimensions: d });
  index.add("doc", vec(1), { a: 1 });
  const key = index.search(vec(1), 1).keys[0];
  assert(key >= 2n ** 63n, "a string id's key has its top bit set");
  for (const call of [() => index.add(key, vec(2)), () => index.add(key, vec(2), { b: 2 }), () => index.add([key], vec(2))]) {
    assertThrows(call, IdConflictError, "ID_CONFLICT");
    assertEquals(index.size, 1);
    assertEquals(index.getRecord("doc")?.metadata, { a: 1 });
    assertEquals(index.getRecord("doc")?.vector, vec(1));
  }
  // Numeric calls on the key do not reach the string record.
  assertEquals(index.getRecord(key), undefined);
  assertEquals(index.update(key, { metadata: { x: 1 } }), false);
  assertEquals(index.getRecord("doc")?.metadata, { a: 1 });
});

test("records: update replaces metadata (and its indexed values) without touching the vector", () => {
  using index = knownIndex();
  const before = index.getRecord("en-2020")!;
  assertEquals(index.update("en-2020", { metadata: { lang: "de", note: "moved" } }), true);
  const after = index.getRecord("en-2020")!;
  assertEquals(after.vector, before.vector);
  assertEquals(after.metadata, { lang: "de", note: "moved" });
  assertEquals(matching(index, { lang: "en" }), sortIds([1]));
  assertEquals(matching(index, { lang: "de" }), sortIds(["de-2021", "en-2020"]));
  assertEquals(matching(index, { year: 2020 }), sortIds([2]));
  // A numeric record without metadata gets some; a missing id is false.
  assertEquals(index.update(3, { metadata: { year: 1 } }), true);
  assertEquals(matching(index, { year: 1 }), sortIds([3]));
  assertEquals(index.update("absent", { metadata: {} }), false);
  assertEquals(index.update(12345, { metadata: {} }), false);
  assertEquals(index.size, known.length);
  // Options are checked.
  assertThrows(() => index.update(1, {} as never), InvalidArgumentError);
  assertThrows(() => index.update(1, { metadata: {}, extra: 1 } as never), InvalidArgumentError);
});

test("records: deleteMany removes exactly the matching records and says how many", () => {
  using index = knownIndex();
  assertEquals(index.deleteMany({ lang: "en" }), 2);
  assertEquals(index.size, known.length - 2);
  assertEquals(index.getRecord("en-2020"), undefined);
  assertEquals(index.has(1), false);
  assertEquals(index.deleteMany({ lang: "en" }), 0);
  assertEquals(index.deleteMany({ allow: ["de-2021", "nope"] }), 1);
  assertEquals(matching(index, {}), sortIds(["fr-none", 2, 3, "日本語-id", 2n ** 63n + 5n]));
  assertThrows(() => index.deleteMany(undefined as never), InvalidArgumentError);
  assertEquals(index.deleteMany({}), 5);
  assertEquals(index.size, 0);
  assertEquals(index.search(vec(0), 3).ids, []);
  assertEquals(index.verify().ok, true);
});

/** What a read of everything shows: count, a search, each record. */
function state(index: Index): string {
  const search = index.search(vec(2), 8, { includeMetadata: true });
  const records = sortIds(index.ids()).map((text) => {
    const id = text.startsWith("s:") ? text.slice(2) : BigInt(text.slice(2));
    const r = index.getRecord(id)!;
    return [text, Array.from(r.vector), r.metadata];
  });
  return JSON.stringify({ size: index.size, count: index.count({ lang: { $exists: true } }), search: [search.ids, search.metadata], records }, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
}

test("records: bad metadata is InvalidMetadataError with its path, and changes nothing", () => {
  using index = knownIndex();
  const before = state(index);
  class Box {}
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const bad: [unknown, string][] = [
    [{ f: () => 1 }, "metadata.f"],
    [{ n: NaN }, "metadata.n"],
    [{ n: Infinity }, "metadata.n"],
    [{ b: 1n }, "metadata.b"],
    [{ when: new Date() }, "metadata.when"],
    [{ box: new Box() }, "metadata.box"],
    [cyclic, "metadata.self"],
    [{ big: "x".repeat(65537) }, "metadata"],
    [{ lang: 7 }, "metadata.lang"],
    [{ year: "2020" }, "metadata.year"],
    [{ tags: ["a", 1] }, "metadata.tags[1]"],
    [{ score: [1, NaN] }, "metadata.score[1]"],
    [{ tags: Array.from({ length: 257 }, (_, i) => `t${i}`) }, "metadata"],
    [[1, 2], "metadata"],
    ["text", "metadata"],
  ];
  for (const [metadata, path] of bad) {
    const m = metadata as Metadata;
    const e1 = assertThrows(() => index.add("new", vec(9), m), InvalidMetadataError, "INVALID_METADATA");
    assertEquals(e1.path, path);
    assertThrows(() => index.add(9, vec(9), m), InvalidMetadataError, "INVALID_METADATA");
    assertThrows(() => index.add("en-2020", vec(9), m), InvalidMetadataError); // an upsert
    const e2 = assertThrows(() => index.update("de-2021", { metadata: m }), InvalidMetadataError);
    assertEquals(e2.path, path);
    // A batch with one bad record in the middle writes none of it.
    const e3 = assertThrows(() => index.add(["b1", "b2", "b3"], new Float32Array(3 * d).fill(0.5), { metadata: [{ lang: "ok" }, m, {}] }), InvalidMetadataError);
    assertEquals(e3.path, path.replace("metadata", "metadata[1]"));
    assertEquals(state(index), before, `after ${path}`);
  }
  // The batch's metadata column must match the ids.
  assertThrows(() => index.add(["b1", "b2"], new Float32Array(2 * d), { metadata: [{}] }), InvalidArgumentError);
  assertThrows(() => index.add(["b1"], new Float32Array(d), { metadata: {} as never }), InvalidArgumentError);
  assertThrows(() => index.add(["b1"], new Float32Array(d), { metadta: [{}] } as never), InvalidArgumentError);
  // The maximum (65536 bytes of JSON) is fine.
  index.add("max", vec(10), { t: "x".repeat(65536 - 8) });
  assertEquals((index.getRecord("max")!.metadata!.t as string).length, 65528);
});

test("records: bad filters are InvalidFilterError with their path, and change nothing", () => {
  using index = knownIndex();
  const before = state(index);
  const bad: [unknown, string][] = [
    [{ body: "x" }, "filter.body"],
    [{ lang: { $regex: "e" } }, "filter.lang.$regex"],
    [{ $nor: [] }, "filter.$nor"],
    [{ lang: 5 }, "filter.lang"],
    [{ year: "2020" }, "filter.year"],
    [{ lang: { $gt: "a" } }, "filter.lang.$gt"],
    [{ year: { $in: [1, "2"] } }, "filter.year.$in[1]"],
    [{ $and: [{ lang: "en" }, { title: "x" }] }, "filter.$and[1].title"],
    [{ year: { $exists: "yes" } }, "filter.year.$exists"],
    [{ allow: [-1] }, "filter.allow[0]"],
    [null, "filter"],
  ];
  for (const [filter, path] of bad) {
    const f = filter as Filter;
    for (const call of [() => index.search(vec(0), 3, { filter: f }), () => index.count(f), () => index.deleteMany(f), () => index.searchBatch(vec(0), 2, { filter: f })]) {
      const e = assertThrows(call, InvalidFilterError, "INVALID_FILTER");
      assertEquals(e.path, path);
    }
    using snapshot = index.snapshot();
    assertThrows(() => snapshot.count(f), InvalidFilterError);
    assertEquals(state(index), before, `after ${path}`);
  }
  // Unknown options are refused rather than ignored (a misspelt filter would match everything).
  for (const options of [{ filtr: { lang: "en" } }, { where: {} }, { threads: 2 }, { includeMetadata: "yes" }]) {
    assertThrows(() => index.search(vec(0), 3, options as never), InvalidArgumentError, "INVALID_ARGUMENT");
  }
  assertThrows(() => index.searchBatch(vec(0), 3, { filtr: {} } as never), InvalidArgumentError);
  assertThrows(() => index.compact({ thread: 2 } as never), InvalidArgumentError);
  assertEquals(state(index), before);
});

test("records: indexes are fixed at creation; open reads them back and refuses different ones", () => {
  const dir = tempDir();
  const path = `${dir}/i.qv`;
  {
    using index = Index.open(path, { dimensions: d, indexes: { lang: "keyword", year: "number" } });
    assertEquals(index.indexes, { lang: "keyword", year: "number" });
    index.add("a", vec(1), { lang: "en", year: 1 });
  }
  {
    // Left out: the stored ones; the same in another order: fine.
    using index = Index.open(path);
    assertEquals(index.indexes, { lang: "keyword", year: "number" });
    assertEquals(index.count({ lang: "en" }), 1);
  }
  Index.open(path, { indexes: { year: "number", lang: "keyword" } }).close();
  for (const other of [{ lang: "keyword" }, { lang: "number", year: "number" }, { lang: "keyword", year: "number", x: "keyword" }, {}]) {
    const e = assertThrows(() => Index.open(path, { indexes: other as never }), InvalidArgumentError, "INVALID_ARGUMENT");
    assert(e.message.includes("differ"), e.message);
  }
  // An index made without indexes that holds records cannot gain them.
  const plain = `${dir}/p.qv`;
  {
    using index = Index.open(plain, { dimensions: d });
    index.add(1, vec(1));
  }
  assertThrows(() => Index.open(plain, { indexes: { lang: "keyword" } }), InvalidArgumentError);
  // Bad indexes fail before any file is made.
  assertThrows(() => Index.open(`${dir}/bad.qv`, { dimensions: d, indexes: { lang: "text" } as never }), InvalidArgumentError);
  assertThrows(() => Index.open(`${dir}/bad.qv`, { create: false }), Error);
  assertThrows(() => new Index({ dimensions: d, indexes: { $x: "keyword" } as never }), InvalidArgumentError);
  // In memory: the same rules for filters.
  using memory = new Index({ dimensions: d, indexes: { n: "number" } });
  assertEquals(memory.indexes, { n: "number" });
  assertThrows(() => memory.count({ lang: "en" }), InvalidFilterError);
});

test("records: metadata and indexed values survive close/reopen, the read-only open, compaction and backup", () => {
  const dir = tempDir();
  const path = `${dir}/r.qv`;
  const random = rng(seedFromEnv(91));
  const expected = new Map<string, { id: Id; i: number; metadata: Metadata | undefined }>();
  {
    using index = Index.open(path, { dimensions: d, indexes: { ...indexes } });
    for (let i = 0; i < 300; i++) {
      const id: Id = i % 3 === 0 ? i : `doc-${i}-ñ`;
      const metadata = randomMetadata(random) as Metadata | undefined;
      index.add(id, vec(i), metadata);
      expected.set(sortIds([id])[0], { id, i, metadata });
    }
    // Some updates and removes (tombstones for compaction to reclaim).
    for (let i = 0; i < 300; i += 7) {
      const id: Id = i % 3 === 0 ? i : `doc-${i}-ñ`;
      index.remove(id);
      expected.delete(sortIds([id])[0]);
    }
    for (let i = 1; i < 300; i += 11) {
      const id: Id = i % 3 === 0 ? i : `doc-${i}-ñ`;
      const e = expected.get(sortIds([id])[0]);
      if (e === undefined) continue;
      e.metadata = { lang: "updated", year: i };
      assertEquals(index.update(id, { metadata: e.metadata }), true);
    }
  }
  const filters: Filter[] = [{ lang: "updated" }, { year: { $gte: 2010 } }, { tags: { $in: ["a", "é"] } }, { score: { $lt: 0 } }, { lang: { $ne: "en" } }];
  const expectCount = (f: Filter) => [...expected.values()].filter((e) => matches(f, { id: e.id, metadata: JSON.parse(JSON.stringify(e.metadata ?? null)) ?? undefined })).length;
  const check = (index: Index, what: string) => {
    assertEquals(index.size, expected.size, `${what}: size`);
    assertEquals(sortIds(index.ids()), [...expected.keys()].sort(), `${what}: ids`);
    for (const e of expected.values()) {
      const r = index.getRecord(e.id);
      assert(r !== undefined, `${what}: ${String(e.id)} missing`);
      assertEquals(r.vector, vec(e.i), `${what}: vector of ${String(e.id)}`);
      assertEquals(r.metadata, e.metadata === undefined ? undefined : JSON.parse(JSON.stringify(e.metadata)), `${what}: metadata of ${String(e.id)}`);
    }
    for (const f of filters) assertEquals(index.count(f), expectCount(f), `${what}: count ${JSON.stringify(f)}`);
    assert(index.verify().ok, `${what}: verify`);
  };
  {
    using index = Index.open(path);
    check(index, "reopened");
    index.backup(`${dir}/backup.qv`);
    using snapshot = index.snapshot();
    snapshot.save(`${dir}/saved.qv`);
  }
  {
    using index = Index.open(path, { readOnly: true });
    check(index, "read-only");
    assertThrows(() => index.update(expected.values().next().value!.id, { metadata: {} }), ReadOnlyError);
  }
  {
    using index = Index.open(path);
    assert(index.stats().tombstones > 0);
    index.compact();
    assertEquals(index.stats().tombstones, 0);
    check(index, "compacted");
  }
  {
    using index = Index.open(path);
    check(index, "compacted, reopened");
  }
  for (const copy of ["backup.qv", "saved.qv"]) {
    using index = Index.open(`${dir}/${copy}`);
    assertEquals(index.indexes, { lang: "keyword", score: "number", tags: "keyword", year: "number" });
    check(index, copy);
  }
});

test("records: a snapshot sees records, metadata and filters as of its moment", () => {
  using index = knownIndex();
  using snapshot = index.snapshot();
  index.update("en-2020", { metadata: { lang: "xx" } });
  index.remove("de-2021");
  index.add("later", vec(20), { lang: "en" });
  index.deleteMany({ year: 2020 });
  assertEquals(snapshot.count(), known.length);
  assertEquals(snapshot.count({ lang: "en" }), 2);
  assertEquals(snapshot.getRecord("en-2020")?.metadata, known[0][1]);
  assertEquals(snapshot.getRecord("de-2021")?.metadata, known[1][1]);
  assertEquals(snapshot.getRecord("later"), undefined);
  assertEquals(snapshot.has("later"), false);
  assertEquals(sortIds(snapshot.search(vec(0), 10, { filter: { lang: "en" } }).ids), sortIds(["en-2020", 1]));
  assertEquals(snapshot.search(vec(0), 1, { includeMetadata: true }).metadata, [known[0][1]]);
  assertEquals(sortIds(snapshot.ids()), sortIds(known.map(([id]) => id)));
  // The live index moved on.
  assertEquals(index.count({ lang: "en" }), 2); // 1 and "later"
  assertEquals(index.getRecord("en-2020")?.metadata, { lang: "xx" }); // its year went with the update
  assertEquals(index.getRecord(2), undefined); // year 2020: deleted
  assertEquals(sortIds(index.search(vec(0), 10, { filter: { lang: "en" } }).ids), sortIds([1, "later"]));
});

// ---------------------------------------------------------------- filtered search quality

function l2(a: Float32Array, at: number, q: Float32Array): number {
  let s = 0;
  for (let j = 0; j < q.length; j++) s += (a[at + j] - q[j]) ** 2;
  return s;
}

test("records: filtered search returns k when k match, and recall@10 >= 0.95 at 50%, 10% and 1% selectivity; a filtered batch matches its searches", () => {
  const seed = seedFromEnv(4242);
  const n = 4000;
  const dims = 24;
  const k = 10;
  const data = clustered(n, dims, seed);
  const random = rng(seed + 1);
  const r = Float64Array.from({ length: n }, () => random());
  using index = new Index({ dimensions: dims, indexes: { r: "number", bucket: "keyword" } });
  const ids = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? i : `v${i}`));
  index.add(ids, data, { metadata: ids.map((_, i) => ({ r: r[i], bucket: `b${Math.floor(r[i] * 100)}` })) });
  const queries = clustered(60, dims, seed + 2);
  const buckets = (m: number) => Array.from({ length: m }, (_, i) => `b${i}`);
  const cases: [string, Filter, (i: number) => boolean][] = [
    ["50% number", { r: { $lt: 0.5 } }, (i) => r[i] < 0.5],
    ["10% number", { r: { $lt: 0.1 } }, (i) => r[i] < 0.1],
    ["1% number", { r: { $lt: 0.01 } }, (i) => r[i] < 0.01],
    ["50% keyword", { bucket: { $in: buckets(50) } }, (i) => r[i] < 0.5],
    ["10% keyword", { bucket: { $in: buckets(10) } }, (i) => r[i] < 0.1],
    ["1% keyword", { bucket: "b0" }, (i) => r[i] < 0.01],
  ];
  const report: string[] = [];
  for (const [name, filter, pass] of cases) {
    const matching = Array.from({ length: n }, (_, i) => i).filter(pass);
    assert(matching.length >= k, `${name}: only ${matching.length} match`);
    assertEquals(index.count(filter), matching.length, `${name}: count`);
    let found = 0;
    // The batch (one native call, the filter matched once, 2 threads) gives each query what a
    // search of it alone gives.
    const batch = index.searchBatch(queries, k, { filter, threads: 2 });
    for (let q = 0; q < 60; q++) {
      const query = queries.subarray(q * dims, (q + 1) * dims);
      const truth = matching.map((i) => [l2(data, i * dims, query), i] as const).sort((a, b) => a[0] - b[0]).slice(0, k).map(([, i]) => ids[i]);
      const result = index.search(query, k, { filter });
      assertEquals(result.ids.length, k, `${name}: query ${q} returned ${result.ids.length}`);
      assertEquals(batch.counts[q], k, `${name}: batch query ${q} count`);
      assertEquals(batch.ids.slice(q * k, (q + 1) * k), result.ids, `${name}: batch query ${q} ids`);
      assertEquals([...batch.distances.subarray(q * k, (q + 1) * k)], [...result.distances], `${name}: batch query ${q} distances`);
      for (const id of result.ids) {
        const i = typeof id === "string" ? Number(id.slice(1)) : Number(id);
        assert(pass(i), `${name}: query ${q} returned ${String(id)}, which does not match`);
      }
      const truthSet = new Set(truth);
      found += result.ids.filter((id) => truthSet.has(id as string | number)).length;
    }
    const recall = found / (60 * k);
    report.push(`${name} (${matching.length} match): recall@10 ${recall.toFixed(3)}`);
    assert(recall >= 0.95, `${name}: recall@10 ${recall} < 0.95`);
  }
  console.log(`records recall (${runtime}, seed ${seed}): ${report.join("; ")}`);
  // Fewer matches than k: all of them, and no more.
  const few = Array.from({ length: n }, (_, i) => i).filter((i) => r[i] < 0.001);
  const result = index.search(queries.subarray(0, dims), k, { filter: { r: { $lt: 0.001 } } });
  assertEquals(sortIds(result.ids), sortIds(few.map((i) => ids[i])));
  assertEquals(index.search(queries.subarray(0, dims), k, { filter: { r: { $lt: -1 } } }).ids, []);
});

// ---------------------------------------------------------------- the property test

test("records: native count, search and deleteMany agree with the JS reference on random data and filters (seeded)", () => {
  const seed = seedFromEnv(Date.now() % 1_000_000);
  console.log(`records native property test (${runtime}): QUIVER_SEED=${seed}`);
  const random = rng(seed);
  const n = 300;
  using index = new Index({ dimensions: d, indexes: { ...schemaIndexes } });
  const model = new Map<string, { id: Id; metadata: Record<string, unknown> | undefined; i: number }>();
  const ids: Id[] = Array.from({ length: n }, (_, i) => (random() < 0.5 ? `id-${i}` : i * 3 + 1));
  const metadata = ids.map(() => randomMetadata(random));
  index.add(ids, Float32Array.from({ length: n * d }, (_, j) => vec(Math.floor(j / d))[j % d]), { metadata: metadata as Metadata[] });
  ids.forEach((id, i) => model.set(sortIds([id])[0], { id, metadata: JSON.parse(JSON.stringify(metadata[i] ?? null)) ?? undefined, i }));
  const expected = (filter: Filter) => [...model.values()].filter((r) => matches(filter, r)).map((r) => r.id);
  const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x));
  for (let round = 0; round < 400; round++) {
    const filter = randomFilter(random, ids);
    const want = sortIds(expected(filter));
    const context = `QUIVER_SEED=${seed} round ${round}: ${show(filter)}`;
    assertEquals(index.count(filter), want.length, `count, ${context}`);
    // k = everything: exactly the matching records.
    const all = index.search(vec(round), n, { filter, ef: n });
    assertEquals(sortIds(all.ids), want, `search membership, ${context}`);
    // k = 10: min(10, matches) results, every one matching.
    const some = index.search(vec(round), 10, { filter });
    assertEquals(some.ids.length, Math.min(10, want.length), `search count, ${context}`);
    const wanted = new Set(want);
    for (const id of sortIds(some.ids)) assert(wanted.has(id), `search returned ${id}, ${context}`);
    // Now and then: mutate, and keep the model in step.
    const p = random();
    if (p < 0.1) {
      const removed = index.deleteMany(filter);
      assertEquals(removed, want.length, `deleteMany, ${context}`);
      for (const text of want) model.delete(text);
    } else if (p < 0.3) {
      const r = [...model.values()][Math.floor(random() * model.size)];
      if (r !== undefined) {
        const m = randomMetadata(random) ?? {};
        assertEquals(index.update(r.id, { metadata: m as Metadata }), true);
        r.metadata = JSON.parse(JSON.stringify(m));
      }
    } else if (p < 0.4) {
      const i = Math.floor(random() * n);
      const m = randomMetadata(random);
      index.add(ids[i], vec(i + 1000), m as Metadata | undefined);
      model.set(sortIds([ids[i]])[0], { id: ids[i], metadata: JSON.parse(JSON.stringify(m ?? null)) ?? undefined, i });
    }
    assertEquals(index.size, model.size, `size, ${context}`);
  }
  assert(index.verify().ok);
});

test("records: the property test's checker catches a wrong native answer (canary)", () => {
  // The same comparison as above against a deliberately wrong oracle ($gte read as $gt) must fail.
  using index = knownIndex();
  const wrong = (filter: Filter) => known.filter(([id, metadata]) => matches(JSON.parse(JSON.stringify(filter).replaceAll('"$gte"', '"$gt"')), { id, metadata: metadata as Record<string, unknown> })).length;
  assert(index.count({ year: { $gte: 2021 } }) !== wrong({ year: { $gte: 2021 } }), "the canary oracle agreed");
});

test("records: an async search and batch add carry filters, metadata and string ids", async () => {
  using index = new Index({ dimensions: d, indexes: { lang: "keyword" } });
  const n = 50;
  const ids = Array.from({ length: n }, (_, i) => (i % 2 ? `a-${i}` : i));
  const vectors = Float32Array.from({ length: n * d }, (_, j) => vec(Math.floor(j / d))[j % d]);
  const added = await index.addAsync(ids, vectors, { metadata: ids.map((_, i) => ({ lang: i % 3 ? "en" : "de", i })), chunk: 7 });
  assertEquals(added, n);
  assertEquals(index.count({ lang: "de" }), 17);
  const sync = index.search(vec(5), 5, { filter: { lang: "en" }, includeMetadata: true });
  const viaWorker = await index.searchAsync(vec(5), 5, { filter: { lang: "en" }, includeMetadata: true });
  assertEquals(viaWorker, sync);
  assertEquals((await index.searchBatchAsync(vec(5), 5, { filter: { lang: "en" } })).ids, sync.ids);
  // Errors come back typed, with their path, and nothing is posted for bad input.
  const bad = await index.searchAsync(vec(5), 5, { filter: { nope: 1 } }).catch((e) => e);
  assert(bad instanceof InvalidFilterError && bad.path === "filter.nope", String(bad));
  const badMeta = await index.addAsync(["x", "y"], new Float32Array(2 * d), { metadata: [{}, { lang: 1 }] }).catch((e) => e);
  assert(badMeta instanceof InvalidMetadataError && badMeta.path === "metadata[1].lang", String(badMeta));
  const badOption = await index.searchAsync(vec(5), 5, { filtr: {} } as never).catch((e) => e);
  assert(badOption instanceof InvalidArgumentError, String(badOption));
  assertEquals(index.size, n);
  {
    using view = index.view("a-1");
    assertEquals([...view.array], [...index.get("a-1")!]);
  }
  assertThrows(() => index.view({} as never), InvalidKeyError);
  assertThrows(() => index.getRecord(Symbol() as never), InvalidKeyError);
  void NotFoundError;
});

test("records: view takes a string id (old: InvalidKeyError); an id not stored, or a string over a numeric key, is NotFoundError", () => {
  using index = new Index({ dimensions: d });
  index.add("doc-é", vec(3), { n: 1 });
  index.add(5, vec(5));
  {
    using view = index.view("doc-é");
    assertEquals([...view.array], [...vec(3)].map((x) => Math.fround(x)));
  }
  assertThrows(() => index.view("missing"), NotFoundError);
  index.remove("doc-é");
  assertThrows(() => index.view("doc-é"), NotFoundError);
  using numeric = index.view(5);
  assertEquals(numeric.array[0], Math.fround(vec(5)[0]));
});
