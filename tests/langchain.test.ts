/**
 * QuiverVectorStore against a brute-force reference, with @langchain/core's fake embeddings
 * (SyntheticEmbeddings: deterministic, text-dependent; FakeEmbeddings: one constant vector).
 */
import { Document } from "@langchain/core/documents";
import { FakeEmbeddings, SyntheticEmbeddings } from "@langchain/core/utils/testing";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { QuiverVectorStore } from "../langchain.ts";
import { assert, assertEquals, rng, tempDir, test } from "./harness.ts";

const embeddings = new SyntheticEmbeddings({ vectorSize: 16 });
const random = rng(7);
const words = Array.from({ length: 60 }, () => Array.from({ length: 3 + Math.floor(random() * 6) }, () => String.fromCharCode(97 + Math.floor(random() * 26))).join(""));
// SyntheticEmbeddings drops everything but letters and spaces: the suffix spells i in letters so
// that no two texts embed alike.
const spelled = (i: number) => String.fromCharCode(97 + (i % 26), 97 + Math.floor(i / 26) % 26);
const texts = Array.from({ length: 240 }, (_, i) => `${words[i % 60]} ${words[(i * 7) % 60]} ${words[(i * 13 + 5) % 60]} ${spelled(i)}`);
const metadatas = texts.map((_, i) => ({ group: ["a", "b", "c"][i % 3], n: i }));

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

test("langchain: fromTexts + similaritySearchVectorWithScore match brute force, with object and predicate filters", async () => {
  using store = await QuiverVectorStore.fromTexts(texts, metadatas, embeddings, { ef: 256 });
  assertEquals(store.size, texts.length);
  const vectors = await embeddings.embedDocuments(texts);
  for (const q of [0, 11, 99, 200]) {
    const query = await embeddings.embedQuery(`${words[q % 60]} ${words[(q * 3) % 60]}`);
    sameRanking(await store.similaritySearchVectorWithScore(query, 8), await reference(query, 8), query, vectors, `query ${q}`);
    const onlyB = await store.similaritySearchVectorWithScore(query, 5, { group: "b" });
    assert(onlyB.every(([d]) => d.metadata.group === "b"), "object filter");
    sameRanking(onlyB, await reference(query, 5, (i) => i % 3 === 1), query, vectors, `query ${q}, group b`);
    const rare = await store.similaritySearchVectorWithScore(query, 3, (doc) => (doc.metadata.n as number) % 40 === 0);
    sameRanking(rare, await reference(query, 3, (i) => i % 40 === 0), query, vectors, `query ${q}, predicate`);
  }
  assertEquals((await store.similaritySearchVectorWithScore(vectors[0], 4, { group: "nope" })).length, 0);
  // The text entry points embed the query the same way.
  const byText = await store.similaritySearch(texts[17], 1);
  assertEquals(byText[0].pageContent, texts[17]);
  const retrieved = await store.asRetriever(3).invoke(texts[42]);
  assertEquals(retrieved.map((d) => d.pageContent), (await store.similaritySearch(texts[42], 3)).map((d) => d.pageContent));
  assertEquals(retrieved[0].pageContent, texts[42]);
});

test("langchain: ids: given ids upsert, documents keep their id, delete removes them from results", async () => {
  using store = new QuiverVectorStore(embeddings);
  const ids = await store.addDocuments(texts.slice(0, 30).map((t, i) => new Document({ pageContent: t, metadata: { n: i } })), { ids: texts.slice(0, 30).map((_, i) => `id-${i}`) });
  assertEquals(ids[3], "id-3");
  const auto = await store.addDocuments([new Document({ pageContent: texts[30], metadata: { n: 30 } })]);
  assert(/^[0-9a-f-]{36}$/.test(auto[0]), `a UUID when no id is given: ${auto[0]}`);
  assertEquals(store.size, 31);
  // Upsert: id-5 now holds text 200.
  await store.addDocuments([new Document({ pageContent: texts[200], metadata: { n: 200 } })], { ids: ["id-5"] });
  assertEquals(store.size, 31);
  const hit = await store.similaritySearch(texts[200], 1);
  assertEquals({ text: hit[0].pageContent, id: hit[0].id }, { text: texts[200], id: "id-5" });
  assert((await store.similaritySearch(texts[5], 31)).every((d) => d.pageContent !== texts[5]), "the replaced text is gone");
  await store.delete({ ids: ["id-5", "id-7", "unknown"] });
  assertEquals(store.size, 29);
  const all = await store.similaritySearch(texts[7], 40);
  assertEquals(all.length, 29);
  assert(all.every((d) => d.id !== "id-5" && d.id !== "id-7"), "deleted documents are never returned");
});

test("langchain: save/load and a persistent path keep documents, ids and metadata; the sidecar is JSON Lines", async () => {
  const dir = tempDir();
  const saved = join(dir, "saved");
  {
    using store = await QuiverVectorStore.fromTexts(texts.slice(0, 50), metadatas.slice(0, 50), embeddings, { metric: "l2", ef: 128 });
    await store.save(saved);
  }
  const query = await embeddings.embedQuery(texts[12]);
  {
    using loaded = await QuiverVectorStore.load(saved, embeddings);
    assertEquals({ size: loaded.size, metric: loaded.args.metric }, { size: 50, metric: "l2" });
    const [[doc, score]] = await loaded.similaritySearchVectorWithScore(query, 1);
    assertEquals({ text: doc.pageContent, metadata: doc.metadata }, { text: texts[12], metadata: metadatas[12] });
    assert(score < 1e-6, `distance to itself ${score}`);
    // A loaded store writes through: add one more and load again.
    await loaded.addDocuments([new Document({ pageContent: texts[100], metadata: metadatas[100] })], { ids: ["late"] });
  }
  {
    using again = await QuiverVectorStore.load(saved, embeddings);
    assertEquals(again.size, 51);
    assertEquals((await again.similaritySearch(texts[100], 1))[0].id, "late");
  }
  const sidecar = readFileSync(join(saved, "index.qv.docs.jsonl"), "utf-8").trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(sidecar.length, 51);
  assertEquals(Object.keys(sidecar[0]).sort(), ["id", "key", "metadata", "text"]);

  const path = join(dir, "live.qv");
  {
    using live = new QuiverVectorStore(embeddings, { path });
    await live.addDocuments(texts.slice(0, 20).map((t, i) => new Document({ pageContent: t, metadata: { n: i } })));
    await live.delete({ ids: [(await live.similaritySearch(texts[3], 1))[0].id!] });
  }
  assert(existsSync(`${path}.docs.jsonl`), "the persistent store writes its sidecar");
  using reopened = new QuiverVectorStore(embeddings, { path });
  assertEquals(reopened.size, 19);
  assertEquals(reopened.index!.size, 19);
  assert((await reopened.similaritySearch(texts[3], 19)).every((d) => d.pageContent !== texts[3]), "the delete persisted");
});

test("langchain: FakeEmbeddings (one constant vector) still returns k distinct documents at distance 0", async () => {
  using store = await QuiverVectorStore.fromTexts(["a", "b", "c", "d"], { source: "fake" }, new FakeEmbeddings());
  const hits = await store.similaritySearchWithScore("anything", 3);
  assertEquals(hits.length, 3);
  assertEquals(new Set(hits.map(([d]) => d.pageContent)).size, 3);
  assert(hits.every(([d, s]) => Math.abs(s) < 1e-6 && d.metadata.source === "fake"), JSON.stringify(hits));
});
