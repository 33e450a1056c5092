/**
 * QuiverVectorStore against a brute-force reference, with @langchain/core's fake embeddings
 * (SyntheticEmbeddings: deterministic, text-dependent; FakeEmbeddings: one constant vector).
 * Documents are the index's native records (string ids; metadata plus `$pageContent`).
 */
import { Document } from "@langchain/core/documents";
import { FakeEmbeddings, SyntheticEmbeddings } from "@langchain/core/utils/testing";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PAGE_CONTENT_KEY, QuiverVectorStore } from "../langchain.ts";
import { Index, InvalidFilterError, InvalidMetadataError } from "../mod.ts";
import { assert, assertEquals, AssertionError, rng, tempDir, test } from "./harness.ts";

const embeddings = new SyntheticEmbeddings({ vectorSize: 16 });
const random = rng(7);
const words = Array.from({ length: 60 }, () => Array.from({ length: 3 + Math.floor(random() * 6) }, () => String.fromCharCode(97 + Math.floor(random() * 26))).join(""));
// SyntheticEmbeddings drops everything but letters and spaces: the suffix spells i in letters so
// that no two texts embed alike.
const spelled = (i: number) => String.fromCharCode(97 + (i % 26), 97 + Math.floor(i / 26) % 26);
const texts = Array.from({ length: 240 }, (_, i) => `${words[i % 60]} ${words[(i * 7) % 60]} ${words[(i * 13 + 5) % 60]} ${spelled(i)}`);
const metadatas = texts.map((_, i) => ({ group: ["a", "b", "c"][i % 3], n: i, nested: { even: i % 2 === 0 } }));
const indexes = { group: "keyword", n: "number" } as const;

// deno-lint-ignore no-explicit-any
async function rejects(promise: Promise<unknown>, cls: new (...args: any[]) => Error, what: string): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof cls) return error;
    throw new AssertionError(`${what}: expected ${cls.name}, got ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
  }
  throw new AssertionError(`${what}: expected ${cls.name}, nothing was thrown`);
}

function cosineDistance(a: number[], b: number[]): number {
  let dot = 0, na = 0, nb = 0;
  for (let j = 0; j < a.length; j++) (dot += a[j] * b[j]), (na += a[j] * a[j]), (nb += b[j] * b[j]);
  return 1 - dot / Math.sqrt(na * nb);
}

/** The brute-force top k texts (by index) for `query` among those `keep` accepts. */
async function reference(query: number[], k: number, keep: (i: number) => boolean = () => true): Promise<number[]> {
  const vectors = await embeddings.embedDocuments(texts);
  return vectors.map((v, i) => ({ i, d: cosineDistance(v, query) })).filter((e) => keep(e.i))
    .sort((a, b) => a.d - b.d || a.i - b.i).slice(0, k).map((e) => e.i);
}

/** Distances of the reference may tie: compare by distance, then check the sets at each distance. */
function sameRanking(got: [Document, number][], expected: number[], query: number[], vectors: number[][], what: string): void {
  assertEquals(got.length, expected.length, what);
  got.forEach(([doc, score], r) => {
    const i = (doc.metadata as { n: number }).n;
    assertEquals(doc.pageContent, texts[i], what);
    const want = cosineDistance(vectors[expected[r]], query);
    assert(Math.abs(score - want) < 1e-5, `${what}: rank ${r} has distance ${score}, brute force ${want} (text ${i} vs ${expected[r]})`);
  });
}

test("langchain: fromTexts + similaritySearchVectorWithScore match brute force, with native object filters and predicates", async () => {
  using store = await QuiverVectorStore.fromTexts(texts, metadatas, embeddings, { ef: 256, indexes });
  assertEquals(store.size, texts.length);
  assertEquals(store.index!.indexes, { group: "keyword", n: "number" });
  const vectors = await embeddings.embedDocuments(texts);
  for (const q of [0, 11, 99, 200]) {
    const query = await embeddings.embedQuery(`${words[q % 60]} ${words[(q * 3) % 60]}`);
    sameRanking(await store.similaritySearchVectorWithScore(query, 8), await reference(query, 8), query, vectors, `query ${q}`);
    const onlyB = await store.similaritySearchVectorWithScore(query, 5, { group: "b" });
    assert(onlyB.every(([d]) => d.metadata.group === "b"), "object filter");
    sameRanking(onlyB, await reference(query, 5, (i) => i % 3 === 1), query, vectors, `query ${q}, group b`);
    // The Quiver filter language: ranges, $in, $or, $not.
    const range = await store.similaritySearchVectorWithScore(query, 6, { n: { $gte: 100, $lt: 130 }, group: { $in: ["a", "c"] } });
    sameRanking(range, await reference(query, 6, (i) => i >= 100 && i < 130 && i % 3 !== 1), query, vectors, `query ${q}, range`);
    const either = await store.similaritySearchVectorWithScore(query, 4, { $or: [{ n: 3 }, { n: 77 }, { n: 150 }], $not: { group: "c" } });
    sameRanking(either, await reference(query, 4, (i) => [3, 77, 150].includes(i) && i % 3 !== 2), query, vectors, `query ${q}, $or`);
    const rare = await store.similaritySearchVectorWithScore(query, 3, (doc) => (doc.metadata.n as number) % 40 === 0);
    sameRanking(rare, await reference(query, 3, (i) => i % 40 === 0), query, vectors, `query ${q}, predicate`);
    // A predicate sees the whole document, nested metadata included.
    const odd = await store.similaritySearchVectorWithScore(query, 4, (doc) => !(doc.metadata.nested as { even: boolean }).even);
    sameRanking(odd, await reference(query, 4, (i) => i % 2 === 1), query, vectors, `query ${q}, nested predicate`);
  }
  assertEquals((await store.similaritySearchVectorWithScore(vectors[0], 4, { group: "nope" })).length, 0);
  // Only declared fields filter natively: anything else is a clear error, not a silent miss.
  const undeclared = await rejects(store.similaritySearchVectorWithScore(vectors[0], 4, { nested: "x" }), InvalidFilterError, "undeclared field");
  assert(/nested/.test(undeclared.message), undeclared.message);
  // The page content stays out of the document's metadata.
  const [[first]] = await store.similaritySearchVectorWithScore(vectors[9], 1);
  assertEquals({ text: first.pageContent, metadata: first.metadata }, { text: texts[9], metadata: metadatas[9] });
  // The text entry points embed the query the same way.
  const byText = await store.similaritySearch(texts[17], 1);
  assertEquals(byText[0].pageContent, texts[17]);
  const retrieved = await store.asRetriever(3).invoke(texts[42]);
  assertEquals(retrieved.map((d) => d.pageContent), (await store.similaritySearch(texts[42], 3)).map((d) => d.pageContent));
  assertEquals(retrieved[0].pageContent, texts[42]);
  const filtered = await store.asRetriever({ k: 2, filter: { group: "c" } }).invoke(texts[42]);
  assert(filtered.length === 2 && filtered.every((d) => d.metadata.group === "c"), JSON.stringify(filtered));
});

test("langchain: ids are the records' string ids: upsert, round trip, delete by id and by filter", async () => {
  using store = new QuiverVectorStore(embeddings, { indexes: { n: "number" } });
  const ids = await store.addDocuments(texts.slice(0, 30).map((t, i) => new Document({ pageContent: t, metadata: { n: i } })), { ids: texts.slice(0, 30).map((_, i) => `id-${i}`) });
  assertEquals(ids[3], "id-3");
  const auto = await store.addDocuments([new Document({ pageContent: texts[30], metadata: { n: 30 } })]);
  assert(/^[0-9a-f-]{36}$/.test(auto[0]), `a UUID when no id is given: ${auto[0]}`);
  // A document's own id is used when no ids are given.
  assertEquals(await store.addDocuments([new Document({ pageContent: texts[31], metadata: { n: 31 }, id: "own/ünïcode id" })]), ["own/ünïcode id"]);
  assertEquals(store.size, 32);
  // The record behind a document: its string id, its metadata with the page content.
  const record = store.index!.getRecord("id-3")!;
  assertEquals({ id: record.id, metadata: record.metadata }, { id: "id-3", metadata: { n: 3, [PAGE_CONTENT_KEY]: texts[3] } });
  assertEquals(store.getDocument("own/ünïcode id")?.pageContent, texts[31]);
  assertEquals(store.getDocument("missing"), undefined);
  // Upsert: id-5 now holds text 200; an id repeated in one call keeps its last document.
  await store.addDocuments([new Document({ pageContent: texts[200], metadata: { n: 200 } })], { ids: ["id-5"] });
  await store.addDocuments([210, 211].map((i) => new Document({ pageContent: texts[i], metadata: { n: i } })), { ids: ["twice", "twice"] });
  assertEquals(store.getDocument("twice")?.pageContent, texts[211]);
  assertEquals(store.size, 33);
  const hit = await store.similaritySearch(texts[200], 1);
  assertEquals({ text: hit[0].pageContent, id: hit[0].id }, { text: texts[200], id: "id-5" });
  assert((await store.similaritySearch(texts[5], 33)).every((d) => d.pageContent !== texts[5]), "the replaced text is gone");
  await store.delete({ ids: ["id-5", "id-7", "unknown"] });
  assertEquals(store.size, 31);
  const all = await store.similaritySearch(texts[7], 40);
  assertEquals(all.length, 31);
  assert(all.every((d) => d.id !== "id-5" && d.id !== "id-7"), "deleted documents are never returned");
  // Delete by a native filter.
  await store.delete({ filter: { n: { $lt: 10 } } });
  assertEquals(store.size, 23);
  assert((await store.similaritySearch(texts[2], 40)).every((d) => (d.metadata.n as number) >= 10), "the filter delete");
  // Bad documents are refused whole, with nothing written.
  await rejects(store.addDocuments([new Document({ pageContent: "a", metadata: { n: "not a number" } })]), InvalidMetadataError, "indexed type");
  await rejects(store.addDocuments([new Document({ pageContent: "a", metadata: { [PAGE_CONTENT_KEY]: "x" } })]), RangeError, "reserved key");
  assertEquals(store.size, 23);
});

test("langchain: save/load and a persistent path keep documents, ids and metadata in the index's records, no sidecar", async () => {
  const dir = tempDir();
  const saved = join(dir, "saved");
  {
    using store = await QuiverVectorStore.fromTexts(texts.slice(0, 50), metadatas.slice(0, 50), embeddings, { metric: "l2", ef: 128, indexes });
    await store.save(saved);
  }
  assert(!existsSync(join(saved, "index.qv.docs.jsonl")), "no sidecar");
  const query = await embeddings.embedQuery(texts[12]);
  {
    using loaded = await QuiverVectorStore.load(saved, embeddings);
    assertEquals({ size: loaded.size, metric: loaded.args.metric, indexes: loaded.index!.indexes }, { size: 50, metric: "l2", indexes });
    const [[doc, score]] = await loaded.similaritySearchVectorWithScore(query, 1);
    assertEquals({ text: doc.pageContent, metadata: doc.metadata }, { text: texts[12], metadata: metadatas[12] });
    assert(score < 1e-6, `distance to itself ${score}`);
    assertEquals((await loaded.similaritySearchVectorWithScore(query, 3, { group: "a", n: { $gt: 40 } })).map(([d]) => d.metadata.n).sort(), [42, 45, 48]);
    // A loaded store writes through: add one more and load again.
    await loaded.addDocuments([new Document({ pageContent: texts[100], metadata: metadatas[100] })], { ids: ["late"] });
  }
  {
    using again = await QuiverVectorStore.load(saved, embeddings);
    assertEquals(again.size, 51);
    assertEquals((await again.similaritySearch(texts[100], 1))[0].id, "late");
    assertEquals((await again.similaritySearch(texts[100], 5, { n: 100 })).map((d) => d.id), ["late"]);
  }
  // The saved index is a plain Quiver index: its records are readable without the store.
  {
    using raw = Index.open(join(saved, "index.qv"), { create: false, readOnly: true });
    assertEquals(raw.getRecord("late")?.metadata, { ...metadatas[100], [PAGE_CONTENT_KEY]: texts[100] });
  }

  const path = join(dir, "live.qv");
  let ids: string[];
  {
    using live = new QuiverVectorStore(embeddings, { path, indexes });
    ids = await live.addDocuments(texts.slice(0, 20).map((t, i) => new Document({ pageContent: t, metadata: metadatas[i] })), { ids: texts.slice(0, 20).map((_, i) => `live-${i}`) });
    await live.delete({ ids: [(await live.similaritySearch(texts[3], 1))[0].id!] });
    await live.delete({ filter: { n: 19 } });
  }
  assert(!existsSync(`${path}.docs.jsonl`), "the persistent store writes no sidecar");
  {
    // Reopened without `indexes`: the stored ones apply.
    using reopened = new QuiverVectorStore(embeddings, { path });
    assertEquals(reopened.size, 18);
    assertEquals(reopened.index!.size, 18);
    const rest = await reopened.similaritySearch(texts[3], 20);
    assertEquals(rest.map((d) => d.id).sort(), ids.filter((id) => id !== "live-3" && id !== "live-19").sort());
    assert(rest.every((d) => d.pageContent === texts[Number(d.id!.slice(5))] && d.metadata.n === Number(d.id!.slice(5))), "ids round trip");
    assertEquals((await reopened.similaritySearch(texts[3], 20, { group: "a" })).length, 6);
  }
  // Other indexes than the stored ones are refused on reopen.
  let refused = false;
  try {
    new QuiverVectorStore(embeddings, { path, indexes: { other: "keyword" } });
  } catch {
    refused = true;
  }
  assert(refused, "a different indexes is an error");
});

test("langchain: an index with an old sidecar (<path>.docs.jsonl) is refused with a clear error", () => {
  const path = join(tempDir(), "old.qv");
  {
    using index = Index.open(path, { dimensions: 16, metric: "cosine" });
    index.add(0, new Float32Array(16).fill(1));
  }
  writeFileSync(`${path}.docs.jsonl`, JSON.stringify({ key: "0", id: "a", text: "old" }) + "\n");
  let message = "";
  try {
    new QuiverVectorStore(embeddings, { path });
  } catch (error) {
    message = (error as Error).message;
  }
  assert(/sidecar/.test(message) && /re-add/.test(message), `the error explains: ${message}`);
});

test("langchain: FakeEmbeddings (one constant vector) still returns k distinct documents at distance 0", async () => {
  using store = await QuiverVectorStore.fromTexts(["a", "b", "c", "d"], { source: "fake" }, new FakeEmbeddings());
  const hits = await store.similaritySearchWithScore("anything", 3);
  assertEquals(hits.length, 3);
  assertEquals(new Set(hits.map(([d]) => d.pageContent)).size, 3);
  assert(hits.every(([d, s]) => Math.abs(s) < 1e-6 && d.metadata.source === "fake"), JSON.stringify(hits));
});
