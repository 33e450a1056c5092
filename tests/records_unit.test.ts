/**
 * The pure side of records (src/records/): the schema, payload and filter-program bytes of
 * docs/records.md, exactly; every typed error with its path; and a seeded property test of the
 * compiler against the JS reference semantics, through an independent interpreter of the program
 * bytes (tests/fixtures/records_gen.ts). None of it needs the native library.
 */
import {
  compileFilter,
  decodePayload,
  decodeTerms,
  encodePayload,
  encodePayloads,
  type Filter,
  matches,
  packIds,
  parseFilter,
  RecordSchema,
  recordLimits,
} from "../src/records/mod.ts";
import { CorruptIndexError, InvalidArgumentError, InvalidFilterError, InvalidKeyError, InvalidMetadataError } from "../src/errors.ts";
import { assert, assertEquals, assertThrows, repoPath, rng, runtime, seedFromEnv, test } from "./harness.ts";
import { randomFilter, randomMetadata, runProgram, schemaIndexes } from "./fixtures/records_gen.ts";

const schema = RecordSchema.fromIndexes(schemaIndexes);
const utf8 = (s: string) => Array.from(new TextEncoder().encode(s));

/** A stand-in for qv_hash_ids: FNV-1a 64 with the top bit set (string keys' bit in records.md). */
function fakeHash(ids: string[]): BigUint64Array {
  const out = new BigUint64Array(ids.length);
  ids.forEach((id, i) => {
    let h = 0xcbf29ce484222325n;
    for (const b of new TextEncoder().encode(id)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
    out[i] = h | (1n << 63n);
  });
  return out;
}

const compile = (filter: unknown) => compileFilter(filter, schema, fakeHash);

function le16(n: number): number[] {
  return [n & 0xff, n >> 8];
}
function le32(n: number): number[] {
  return [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];
}
function f64(x: number): number[] {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, x, true);
  return Array.from(b);
}
function u64(x: bigint): number[] {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, x, true);
  return Array.from(b);
}

// ---------------------------------------------------------------- schema

test("records: the schema's bytes are docs/records.md's, fields sorted by name", () => {
  // lang(1) score(2) tags(1) year(2), in name order whatever the object's order.
  const expected = [1, 4, 1, 4, ...utf8("lang"), 2, 5, ...utf8("score"), 1, 4, ...utf8("tags"), 2, 4, ...utf8("year")];
  assertEquals(Array.from(schema.bytes), expected);
  const shuffled = RecordSchema.fromIndexes({ year: "number", tags: "keyword", score: "number", lang: "keyword" });
  assert(shuffled.equals(schema), "field order changed the schema");
  assertEquals(schema.fields.map((f) => [f.name, f.kind, f.number]), [["lang", "keyword", 0], ["score", "number", 1], ["tags", "keyword", 2], ["year", "number", 3]]);
  assertEquals(Array.from(RecordSchema.empty.bytes), [1, 0]);
  // Decoding gives the same schema back; zero bytes is the empty one.
  assert(RecordSchema.decode(schema.bytes).equals(schema));
  assertEquals(RecordSchema.decode(schema.bytes).toIndexes(), { lang: "keyword", score: "number", tags: "keyword", year: "number" });
  assert(RecordSchema.decode(new Uint8Array(0)).equals(RecordSchema.empty));
  assert(!RecordSchema.fromIndexes({ lang: "number" }).equals(RecordSchema.fromIndexes({ lang: "keyword" })));
  const unicode = RecordSchema.fromIndexes({ "größe": "number" });
  assertEquals(Array.from(unicode.bytes), [1, 1, 2, 7, ...utf8("größe")]);
});

test("records: a bad schema is InvalidArgumentError naming the field; a bad stored one CorruptIndexError", () => {
  for (const bad of [null, 3, "lang", ["lang"], { lang: "text" }, { lang: 1 }, { "": "keyword" }, { ["x".repeat(65)]: "number" }, { allow: "keyword" }, { $lang: "keyword" }, { ["\ud800"]: "keyword" }]) {
    assertThrows(() => RecordSchema.fromIndexes(bad), InvalidArgumentError, "INVALID_ARGUMENT");
  }
  const e = assertThrows(() => RecordSchema.fromIndexes({ lang: "text" }), InvalidArgumentError);
  assert(e.message.includes("indexes.lang") && e.message.includes('"keyword" or "number"'), e.message);
  // The maximum: 32 fields of 64-byte names.
  const max = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [String(i).padStart(64, "n"), "keyword" as const]));
  assertEquals(RecordSchema.fromIndexes(max).fields.length, 32);
  assertThrows(() => RecordSchema.fromIndexes({ ...max, extra: "number" }), InvalidArgumentError);
  for (const bytes of [[2, 0], [1, 1], [1, 1, 3, 1, 97], [1, 1, 1, 5, 97], [1, 0, 0], [1, 1, 1, 1, 0xff]]) {
    assertThrows(() => RecordSchema.decode(new Uint8Array(bytes)), CorruptIndexError);
  }
});

// ---------------------------------------------------------------- payloads

test("records: a payload's bytes are docs/records.md's: header, id, JSON, terms in field order", () => {
  const metadata = { year: [2020, 2021, 2020], lang: "en", title: "t", tags: ["b", "a", "b"], score: -0 };
  const bytes = encodePayload("doc-1", metadata, schema);
  const json = utf8(JSON.stringify(metadata));
  const header = [1, 0, ...le16(5), ...le32(json.length), ...le16(6), 0, 0];
  const terms = [
    0, 1, ...le16(2), ...utf8("en"), // lang
    1, 2, ...f64(0), // score: -0 becomes 0
    2, 1, ...le16(1), ...utf8("b"), 2, 1, ...le16(1), ...utf8("a"), // tags, the repeated "b" once
    3, 2, ...f64(2020), 3, 2, ...f64(2021), // year, the repeated 2020 once
  ];
  assertEquals(Array.from(bytes), [...header, ...utf8("doc-1"), ...json, ...terms]);
  assert(Object.is(decodeTerms(bytes)[1].value, 0), "-0 was not made 0");
  assertEquals(decodePayload(bytes), { id: "doc-1", metadata: { year: [2020, 2021, 2020], lang: "en", title: "t", tags: ["b", "a", "b"], score: 0 } });
  // A numeric id without metadata is the bare header; with metadata but no indexed field, no terms.
  assertEquals(Array.from(encodePayload(undefined, undefined, schema)), [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals(decodePayload(encodePayload(undefined, undefined, schema)), { id: undefined, metadata: undefined });
  const plain = encodePayload(undefined, { other: 1 }, schema);
  assertEquals(Array.from(plain.subarray(0, 12)), [1, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals(decodePayload(new Uint8Array(0)), { id: undefined, metadata: undefined });
  // An empty schema indexes nothing.
  assertEquals(decodeTerms(encodePayload("x", metadata, RecordSchema.empty)), []);
});

test("records: payload limits: 1024-byte ids, 65536 bytes of JSON, 256-byte keywords, 256 terms, exactly", () => {
  // Ids: the exact maximum in multi-byte characters, and one byte more.
  const maxId = "é".repeat(512);
  assertEquals(new TextEncoder().encode(maxId).length, recordLimits.idBytesMax);
  assertEquals(decodePayload(encodePayload(maxId, undefined, schema)).id, maxId);
  assertThrows(() => encodePayload(maxId + "x", undefined, schema), InvalidKeyError, "INVALID_KEY");
  assertThrows(() => encodePayload("", undefined, schema), InvalidKeyError);
  assertThrows(() => encodePayload("a\udc00b", undefined, schema), InvalidKeyError);
  const astral = "😀".repeat(256); // 4 bytes each
  assertEquals(decodePayload(encodePayload(astral, undefined, schema)).id, astral);
  // Metadata: exactly 65536 bytes of JSON, and one more.
  const filler = (n: number) => ({ t: "x".repeat(n - 8) }); // {"t":""} is 8 bytes
  assertEquals(JSON.stringify(filler(65536)).length, 65536);
  assertEquals((decodePayload(encodePayload(undefined, filler(65536), schema)).metadata as { t: string }).t.length, 65528);
  const big = assertThrows(() => encodePayload(undefined, filler(65537), schema), InvalidMetadataError, "INVALID_METADATA");
  assert(big.message.includes("65537 bytes"), big.message);
  // Keywords: 256 bytes in, 257 out (counted in UTF-8).
  encodePayload(undefined, { lang: "ü".repeat(128) }, schema);
  const long = assertThrows(() => encodePayload(undefined, { tags: ["ok", "ü".repeat(128) + "x"] }, schema), InvalidMetadataError);
  assertEquals(long.path, "metadata.tags[1]");
  // Terms: 256 in, 257 out (distinct values; duplicates count once).
  const tags = (n: number) => Array.from({ length: n }, (_, i) => `t${i}`);
  assertEquals(decodeTerms(encodePayload(undefined, { tags: tags(256) }, schema)).length, 256);
  assertEquals(decodeTerms(encodePayload(undefined, { tags: [...tags(256), "t0"] }, schema)).length, 256);
  assertThrows(() => encodePayload(undefined, { tags: tags(255), lang: ["x", "y"] }, schema), InvalidMetadataError);
});

test("records: bad metadata is InvalidMetadataError saying what and where", () => {
  class Thing {}
  const cyclic: Record<string, unknown> = { a: { b: {} } };
  (cyclic.a as { b: Record<string, unknown> }).b.c = cyclic;
  let deep: Record<string, unknown> = {};
  const root = deep;
  for (let i = 0; i < 70; i++) deep = (deep.n = {}) as Record<string, unknown>;
  const cases: [unknown, string, string][] = [
    [{ f: () => 1 }, "metadata.f", "function"],
    [{ n: NaN }, "metadata.n", "NaN"],
    [{ n: [1, Infinity] }, "metadata.n[1]", "Infinity"],
    [{ n: -Infinity }, "metadata.n", "-Infinity"],
    [{ b: 10n }, "metadata.b", "bigint"],
    [{ a: { d: new Date(0) } }, "metadata.a.d", "Date"],
    [{ t: new Thing() }, "metadata.t", "Thing"],
    [{ m: new Map() }, "metadata.m", "Map"],
    [{ u: new Uint8Array(2) }, "metadata.u", "Uint8Array"],
    [{ s: Symbol("x") }, "metadata.s", "symbol"],
    [{ u: undefined }, "metadata.u", "undefined"],
    [{ "a b": [1, [2, undefined]] }, 'metadata["a b"][1][1]', "undefined"],
    [{ h: [1, , 3] }, "metadata.h[1]", "hole"],
    [cyclic, "metadata.a.b.c", "cycle"],
    [root, "metadata" + ".n".repeat(64), "64 levels"],
    [{ [Symbol("k")]: 1 }, "metadata", "symbol"],
    ["text", "metadata", "object of fields"],
    [[1, 2], "metadata", "object of fields"],
    [null, "metadata", "object of fields"],
    [5, "metadata", "object of fields"],
    // Indexed fields must have their declared types.
    [{ lang: 5 }, "metadata.lang", "keyword"],
    [{ lang: null }, "metadata.lang", "keyword"],
    [{ lang: ["en", 3] }, "metadata.lang[1]", "keyword"],
    [{ lang: { x: "en" } }, "metadata.lang", "keyword"],
    [{ tags: ["ok", "\ud800"] }, "metadata.tags[1]", "surrogate"],
    [{ year: "2020" }, "metadata.year", "number"],
    [{ year: true }, "metadata.year", "number"],
    [{ score: [1, "2"] }, "metadata.score[1]", "number"],
    [{ score: [[1]] }, "metadata.score[0]", "number"],
  ];
  for (const [metadata, path, word] of cases) {
    const e = assertThrows(() => encodePayload("id", metadata, schema), InvalidMetadataError, "INVALID_METADATA");
    assertEquals(e.path, path, `path for ${word}`);
    assert(e.message.includes(word), `${path}: "${e.message}" lacks "${word}"`);
  }
  // JSON-like values that are fine: nested objects, mixed arrays, null, booleans, unicode,
  // objects without a prototype; an indexed field with an empty array has no terms.
  const ok = { a: { b: [1, "x", null, true, { c: [] }] }, e: null, lang: "日本語", tags: [], proto: Object.assign(Object.create(null), { k: 1 }) };
  const back = decodePayload(encodePayload("id", ok, schema));
  assertEquals(back.metadata, JSON.parse(JSON.stringify(ok)));
  assertEquals(decodeTerms(encodePayload("id", ok, schema)).length, 1);
  // A shared (not cyclic) object is fine.
  const shared = { x: 1 };
  encodePayload("id", { a: shared, b: shared, c: [shared, shared] }, schema);
});

test("records: a batch's payload column: count + 1 offsets, each payload whole; a bad record names its index", () => {
  const { bytes, offsets } = encodePayloads(["a", undefined, "ccc"], [{ lang: "en" }, undefined, { year: 1 }], schema);
  assertEquals(offsets.length, 4);
  assertEquals(offsets[0], 0);
  assertEquals(offsets[3], bytes.length);
  assertEquals(decodePayload(bytes.subarray(offsets[0], offsets[1])), { id: "a", metadata: { lang: "en" } });
  assertEquals(offsets[2] - offsets[1], 12);
  assertEquals(decodePayload(bytes.subarray(offsets[2], offsets[3])), { id: "ccc", metadata: { year: 1 } });
  const e = assertThrows(() => encodePayloads([undefined, undefined], [{ lang: "en" }, { lang: 1 }], schema), InvalidMetadataError);
  assertEquals(e.path, "metadata[1].lang");
  const k = assertThrows(() => encodePayloads(["ok", ""], undefined, schema), InvalidKeyError);
  assert(k.message.includes("ids[1]"), k.message);
  // packIds: the qv_hash_ids columns.
  const packed = packIds(["ab", "é", "x"]);
  assertEquals(Array.from(packed.offsets), [0, 2, 4, 5]);
  assertEquals(Array.from(packed.bytes), [...utf8("ab"), ...utf8("é"), ...utf8("x")]);
  assertThrows(() => packIds(["ok", "y".repeat(1025)]), InvalidKeyError);
});

test("records: a corrupt payload is CorruptIndexError, not a crash", () => {
  const good = encodePayload("id", { lang: "en" }, schema);
  const cases = [good.subarray(0, 5), Uint8Array.of(2, ...good.subarray(1)), good.subarray(0, good.length - 20)];
  const badUtf8 = good.slice();
  badUtf8[12] = 0xff;
  cases.push(badUtf8);
  for (const bytes of cases) assertThrows(() => decodePayload(bytes), CorruptIndexError, "CORRUPT_INDEX");
});

// ---------------------------------------------------------------- filters

test("records: each operator compiles to docs/records.md's ops, byte for byte", () => {
  const prog = (ops: number, ...body: number[]) => [1, ...le16(ops), ...body];
  const kw = (field: number, ...values: string[]) => [0x02, field, ...le16(values.length), ...values.flatMap((v) => [...le16(utf8(v).length), ...utf8(v)])];
  const cmp = (field: number, c: number, v: number) => [0x03, field, c, ...f64(v)];
  const lang = 0, score = 1, tags = 2, year = 3;
  const cases: [Filter, number[]][] = [
    [{}, prog(1, 0x01)],
    [{ lang: "en" }, prog(1, ...kw(lang, "en"))],
    [{ lang: { $eq: "日本" } }, prog(1, ...kw(lang, "日本"))],
    [{ lang: { $ne: "en" } }, prog(2, ...kw(lang, "en"), 0x08)],
    [{ tags: { $in: ["a", "b", "a"] } }, prog(1, ...kw(tags, "a", "b"))],
    [{ tags: { $nin: ["a"] } }, prog(2, ...kw(tags, "a"), 0x08)],
    [{ tags: { $in: [] } }, prog(2, 0x01, 0x08)],
    [{ tags: { $nin: [] } }, prog(3, 0x01, 0x08, 0x08)],
    [{ year: 2020 }, prog(1, ...cmp(year, 1, 2020))],
    [{ year: { $eq: -0 } }, prog(1, ...cmp(year, 1, 0))],
    [{ year: { $ne: 1.5 } }, prog(2, ...cmp(year, 1, 1.5), 0x08)],
    [{ year: { $lt: 1 } }, prog(1, ...cmp(year, 2, 1))],
    [{ year: { $lte: 1 } }, prog(1, ...cmp(year, 3, 1))],
    [{ year: { $gt: 1 } }, prog(1, ...cmp(year, 4, 1))],
    [{ year: { $gte: 1 } }, prog(1, ...cmp(year, 5, 1))],
    [{ score: { $in: [1, 2.5] } }, prog(1, 0x04, score, ...le16(2), ...f64(1), ...f64(2.5))],
    [{ score: { $nin: [3] } }, prog(2, 0x04, score, ...le16(1), ...f64(3), 0x08)],
    [{ lang: { $exists: true } }, prog(1, 0x05, lang)],
    [{ lang: { $exists: false } }, prog(2, 0x05, lang, 0x08)],
    [{ year: { $not: { $gt: 5 } } }, prog(2, ...cmp(year, 4, 5), 0x08)],
    [{ year: { $not: 5 } }, prog(2, ...cmp(year, 1, 5), 0x08)],
    [{ year: { $gte: 1, $lt: 9 } }, prog(3, ...cmp(year, 5, 1), ...cmp(year, 2, 9), 0x06, ...le16(2))],
    [{ lang: "en", year: 3 }, prog(3, ...kw(lang, "en"), ...cmp(year, 1, 3), 0x06, ...le16(2))],
    [{ $and: [{ lang: "en" }, { year: 3 }] }, prog(3, ...kw(lang, "en"), ...cmp(year, 1, 3), 0x06, ...le16(2))],
    [{ $or: [{ lang: "en" }, { lang: "de" }, { year: 3 }] }, prog(4, ...kw(lang, "en"), ...kw(lang, "de"), ...cmp(year, 1, 3), 0x07, ...le16(3))],
    [{ $and: [{ lang: "en" }] }, prog(1, ...kw(lang, "en"))],
    [{ $not: { lang: "en" } }, prog(2, ...kw(lang, "en"), 0x08)],
    [{ allow: [1, 2n ** 64n - 1n] }, prog(1, 0x09, ...le32(2), ...u64(1n), ...u64(2n ** 64n - 1n))],
    [{ allow: BigUint64Array.of(5n) }, prog(1, 0x09, ...le32(1), ...u64(5n))],
    [{ allow: ["doc", 3] }, prog(1, 0x09, ...le32(2), ...u64(3n), ...u64(fakeHash(["doc"])[0]))],
    [{ allow: [] }, prog(1, 0x09, ...le32(0))],
    [{ allow: [1], lang: "en" }, prog(3, 0x09, ...le32(1), ...u64(1n), ...kw(lang, "en"), 0x06, ...le16(2))],
  ];
  for (const [filter, expected] of cases) assertEquals(Array.from(compile(filter)), expected, JSON.stringify(filter, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)));
});

test("records: AND/OR operands go deepest first, wide ones become trees: the stack stays within 64", () => {
  // 200 conditions in one $and: a flat AND would need a stack of 200.
  const wide = { $and: Array.from({ length: 200 }, (_, i) => ({ year: { $ne: i } })) };
  const program = compile(wide);
  const metadata = { year: 7 };
  assertEquals(runProgram(program, 0n, [{ field: 3, kind: "number", value: 7 }]), matches(wide, { id: 0, metadata }));
  assertEquals(runProgram(program, 0n, []), true);
  // A deep right-leaning chain runs within the stack once its deep operand goes first.
  let chain: Filter = { lang: "en" };
  for (let i = 0; i < 30; i++) chain = { $or: [{ year: i }, chain] };
  runProgram(compile(chain), 0n, []);
  // Nesting past the parser's bound is refused, with a path.
  let deep: Filter = { lang: "en" };
  for (let i = 0; i < 40; i++) deep = { $not: deep };
  const e = assertThrows(() => compile(deep), InvalidFilterError, "INVALID_FILTER");
  assert(e.message.includes("nested"), e.message);
  // Programs over 4096 ops are refused.
  const many = { $or: Array.from({ length: 5000 }, (_, i) => ({ year: i })) };
  const big = assertThrows(() => compile(many), InvalidFilterError);
  assert(big.message.includes("4096"), big.message);
  // A $in over 65535 values splits into an OR of sets (the count is a u16).
  const values = Array.from({ length: 70000 }, (_, i) => i);
  const split = compile({ score: { $in: values } });
  assertEquals(runProgram(split, 0n, [{ field: 1, kind: "number", value: 69999 }]), true);
  assertEquals(runProgram(split, 0n, [{ field: 1, kind: "number", value: 70000 }]), false);
});

test("records: bad filters are InvalidFilterError naming the problem and its path", () => {
  const cases: [unknown, string, string][] = [
    [null, "filter", "object of conditions"],
    ["lang", "filter", "object of conditions"],
    [[{ lang: "en" }], "filter", "object of conditions"],
    [{ body: "x" }, "filter.body", "not declared in indexes"],
    [{ $where: "x" }, "filter.$where", "unknown operator"],
    [{ $eq: 1 }, "filter.$eq", "unknown operator"],
    [{ lang: { $regex: "e.*" } }, "filter.lang.$regex", "unknown operator"],
    [{ lang: { en: 1 } }, "filter.lang.en", "unknown operator"],
    [{ lang: {} }, "filter.lang", "empty condition"],
    [{ lang: 5 }, "filter.lang", "keyword field"],
    [{ lang: ["en"] }, "filter.lang", "$in"],
    [{ lang: true }, "filter.lang", "not a condition"],
    [{ lang: null }, "filter.lang", "not a condition"],
    [{ lang: undefined }, "filter.lang", "undefined"],
    [{ lang: { $in: "en" } }, "filter.lang.$in", "array"],
    [{ lang: { $in: ["en", 1] } }, "filter.lang.$in[1]", "keyword field"],
    [{ lang: { $gt: "a" } }, "filter.lang.$gt", "compares numbers"],
    [{ lang: "x".repeat(257) }, "filter.lang", "257 bytes"],
    [{ lang: "\udfff" }, "filter.lang", "surrogate"],
    [{ year: "2020" }, "filter.year", "number field"],
    [{ year: NaN }, "filter.year", "number field"],
    [{ year: { $gt: Infinity } }, "filter.year.$gt", "finite"],
    [{ year: { $gte: 1n } }, "filter.year.$gte", "bigint"],
    [{ year: { $exists: 1 } }, "filter.year.$exists", "true or false"],
    [{ year: { $lt: 5, $foo: 1 } }, "filter.year.$foo", "unknown operator"],
    [{ $and: [] }, "filter.$and", "non-empty array"],
    [{ $or: { lang: "en" } }, "filter.$or", "non-empty array"],
    [{ $and: [{ lang: "en" }, { nope: 1 }] }, "filter.$and[1].nope", "not declared"],
    [{ $or: [{ year: { $in: [1, "2"] } }] }, "filter.$or[0].year.$in[1]", "number field"],
    [{ $not: "x" }, "filter.$not", "object of conditions"],
    [{ $not: { year: { $lt: "x" } } }, "filter.$not.year.$lt", "number field"],
    [{ allow: "doc" }, "filter.allow", "array of ids"],
    [{ allow: [1, -1] }, "filter.allow[1]", "not an id"],
    [{ allow: [1.5] }, "filter.allow[0]", "not an id"],
    [{ allow: [2n ** 64n] }, "filter.allow[0]", "outside"],
    [{ allow: [""] }, "filter.allow[0]", "string id"],
    [{ allow: ["x".repeat(1025)] }, "filter.allow[0]", "string id"],
    [{ allow: [null] }, "filter.allow[0]", "not an id"],
    [{ lang: { $eq: new Date() } }, "filter.lang.$eq", "Date"],
  ];
  for (const [filter, path, word] of cases) {
    const e = assertThrows(() => compile(filter), InvalidFilterError, "INVALID_FILTER");
    assertEquals(e.path, path, `path of ${word}`);
    assert(e.message.includes(word), `${path}: "${e.message}" lacks "${word}"`);
  }
  // A field is checked against the schema: an index without indexes filters nothing but allow.
  const e = assertThrows(() => compileFilter({ lang: "en" }, RecordSchema.empty, fakeHash), InvalidFilterError);
  assert(e.message.includes("declares none"), e.message);
  assertEquals(Array.from(compileFilter({ allow: [1] }, RecordSchema.empty, fakeHash)).length, 3 + 5 + 8);
  // The maximum string id in an allow-list is fine.
  compile({ allow: ["é".repeat(512)] });
  // parseFilter is what compileFilter validates with: the same errors without hashing.
  assertThrows(() => parseFilter({ nope: 1 }, schema), InvalidFilterError);
});

// ---------------------------------------------------------------- the property test

interface Sample {
  id: string | number;
  key: bigint;
  metadata: Record<string, unknown> | undefined;
}

function sampleRecords(random: () => number, n: number): Sample[] {
  const out: Sample[] = [];
  for (let i = 0; i < n; i++) {
    const id = random() < 0.5 ? `doc-${i}` : i;
    const key = typeof id === "string" ? fakeHash([id])[0] : BigInt(id);
    out.push({ id, key, metadata: randomMetadata(random) });
  }
  return out;
}

const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x));

/** Mismatches between the compiled program (run by the fixture's interpreter) and `reference`. */
function mismatches(seed: number, rounds: number, reference: typeof matches, stats = { mixed: 0 }): string[] {
  const random = rng(seed);
  const records = sampleRecords(random, 60);
  const terms = records.map((r) => decodeTerms(encodePayload(typeof r.id === "string" ? r.id : undefined, r.metadata, schema)));
  const ids = records.map((r) => r.id);
  const found: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const filter = randomFilter(random, ids);
    const program = compile(filter);
    let hits = 0;
    for (let i = 0; i < records.length; i++) {
      const expected = reference(filter, { id: records[i].id, metadata: records[i].metadata });
      const actual = runProgram(program, records[i].key, terms[i]);
      if (actual) hits++;
      if (expected !== actual) {
        found.push(`filter ${show(filter)} on ${show(records[i])}: reference ${expected}, program ${actual}`);
        break;
      }
    }
    if (hits > 0 && hits < records.length) stats.mixed++;
  }
  return found;
}

test("records: compiled filters mean what the reference says, on random records and filters (seeded)", () => {
  const seed = seedFromEnv(Date.now() % 1_000_000);
  console.log(`records property test (${runtime}): QUIVER_SEED=${seed}`);
  const stats = { mixed: 0 };
  const found = mismatches(seed, 1500, matches, stats);
  assertEquals(found.slice(0, 3), [], `QUIVER_SEED=${seed}`);
  // The filters discriminate: most match some records and not others.
  assert(stats.mixed > 1500 * 0.4, `only ${stats.mixed} of 1500 filters split the records`);
  // Canaries: a reference with $ne false on a missing field, and one with $gt read as $gte, must
  // each be told apart from the compiled program.
  const neStrict: typeof matches = (filter, record) => {
    const text = JSON.stringify(filter);
    if (text.includes('"$ne"') || text.includes('"$nin"')) {
      const fields = ["lang", "tags", "year", "score"].filter((f) => text.includes(`"${f}":{"$n`));
      if (fields.some((f) => record.metadata?.[f] === undefined)) return false;
    }
    return matches(filter, record);
  };
  assert(mismatches(seed, 1500, neStrict).length > 0, "canary: $ne on a missing field went unnoticed");
  const gtAsGte: typeof matches = (filter, record) => matches(JSON.parse(JSON.stringify(filter).replaceAll('"$gt"', '"$gte"')), record);
  assert(mismatches(seed + 1, 3000, gtAsGte).length > 0, "canary: $gt read as $gte went unnoticed");
});

test("records: src/records/ imports only itself, ../errors.ts and ../ffi.gen.ts (it loads no native code)", async () => {
  const { readdirSync, readFileSync } = await import("node:fs");
  const dir = repoPath("src/records");
  const allowed = new Set(["../errors.ts", "../ffi.gen.ts"]);
  const check = (file: string, text: string) => {
    const bad: string[] = [];
    for (const m of text.matchAll(/^import[^"]*"([^"]+)"/gm)) {
      const spec = m[1];
      if (!(spec.startsWith("./") && !spec.includes("/", 2)) && !allowed.has(spec)) bad.push(`${file}: ${spec}`);
    }
    return bad;
  };
  const bad = readdirSync(dir).filter((f: string) => f.endsWith(".ts")).flatMap((f: string) => check(f, readFileSync(`${dir}/${f}`, "utf-8")));
  assertEquals(bad, []);
  // Canary: an import of the loader is caught.
  assertEquals(check("x.ts", 'import { native } from "../runtime/loader.ts";').length, 1);
});
