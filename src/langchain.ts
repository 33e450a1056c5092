/**
 * QuiverVectorStore: Quiver as a LangChain.js vector store (`@langchain/core`'s VectorStore).
 *
 * Each document is one native record of the index (README, "Records"): its id is the record's
 * string id, and the record's metadata is the document's metadata with its page content under
 * the reserved key `$pageContent` (PAGE_CONTENT_KEY):
 *
 *   id "doc-1", metadata { "lang": "en", "year": 2024, "$pageContent": "..." }
 *
 * The metadata fields stay at the top level so that the fields declared in the store's
 * `indexes` can be filtered natively; a name starting with `$` can never be an indexed field,
 * so the reserved key never collides with one (a document whose metadata has a `$pageContent`
 * key of its own is refused). Everything lives in the index's own files: writes are as durable
 * as the index's, and nothing is rewritten per call. Scores are the index's distances: lower
 * is closer (cosine distance 1 - cos by default).
 *
 * @langchain/core is an optional peer dependency: only this module imports it.
 */
import { VectorStore } from "@langchain/core/vectorstores";
import { Document, type DocumentInterface } from "@langchain/core/documents";
import type { EmbeddingsInterface } from "@langchain/core/embeddings";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Filter, Index, type Indexes, type Metadata, type Metric, type Storage } from "../mod.ts";
import { docsPath } from "./docstore.ts";

/** The record metadata key that holds a document's page content. */
export const PAGE_CONTENT_KEY = "$pageContent";

/**
 * A filter: a Quiver filter object over the fields declared in the store's `indexes`
 * (`{ lang: "en", year: { $gte: 2020 } }`, see README "Records"; an undeclared field is an
 * InvalidFilterError), run natively; or a predicate on the Document, applied to the index's
 * candidates (the store searches for k, then 4k, 16k, ... until k documents pass).
 */
export type QuiverFilter = Filter | ((document: DocumentInterface) => boolean);

export interface QuiverStoreArgs {
  /** A persistent index at this path (created if missing); in memory when absent. */
  path?: string;
  /** Distance: "cosine" (default), "l2" or "ip". */
  metric?: Metric;
  /** Vector length; taken from the first vectors added when absent. */
  dimensions?: number;
  m?: number;
  efConstruction?: number;
  /** Search beam width (default max(64, k)). */
  ef?: number;
  storage?: Storage;
  /** Native threads for batch inserts (default 1). */
  threads?: number;
  /**
   * The metadata fields that object filters can use, fixed when the index is created:
   * `{ lang: "keyword", year: "number" }`. A document whose indexed field has another type is
   * refused (InvalidMetadataError). Reopening an existing index may leave it out.
   */
  indexes?: Indexes;
}

const INDEX_FILE = "index.qv";
const ARGS_FILE = "quiver.json";

/** Throws for an index written by the sidecar-based store of earlier versions. */
function refuseSidecar(path: string): void {
  if (existsSync(docsPath(path))) {
    throw new Error(
      `${path} has a sidecar (${docsPath(path)}): it was written by an earlier QuiverVectorStore, which kept documents outside the index. ` +
        "This version keeps them as the index's records and cannot read the sidecar: re-add the documents to a new store",
    );
  }
}

/** A LangChain.js vector store on a Quiver index. Not thread-safe: use it from one thread. */
export class QuiverVectorStore extends VectorStore {
  declare FilterType: QuiverFilter;
  readonly args: QuiverStoreArgs;
  #index: Index | undefined;

  _vectorstoreType(): string {
    return "quiver";
  }

  constructor(embeddings: EmbeddingsInterface, args: QuiverStoreArgs = {}) {
    super(embeddings, args);
    this.args = { metric: "cosine", ...args };
    if (args.path) refuseSidecar(args.path);
    if (args.path && existsSync(args.path)) this.#index = Index.open(args.path, { create: false, indexes: args.indexes });
  }

  /** The index (undefined until the first vectors fix the dimensions). */
  get index(): Index | undefined {
    return this.#index;
  }

  /** Documents in the store. O(1). */
  get size(): number {
    return this.#index?.size ?? 0;
  }

  #ensureIndex(dimensions: number): Index {
    if (this.#index) return this.#index;
    const a = this.args;
    const options = { dimensions: a.dimensions ?? dimensions, metric: a.metric, m: a.m, efConstruction: a.efConstruction, storage: a.storage, indexes: a.indexes };
    this.#index = a.path ? Index.open(a.path, options) : new Index(options);
    return this.#index;
  }

  /**
   * Adds vectors with their documents; `options.ids` (or each document's `id`) names them, else
   * a random UUID does. An id already in the store is replaced (upsert; the last of one id
   * repeated in a call wins). Returns the ids. The batch is validated whole (metadata must be
   * JSON-like, indexed fields of their declared type, at most 65,536 bytes of JSON with the page
   * content) before anything is written. Cost: one batch insert, O(efConstruction log n) per
   * vector.
   */
  addVectors(vectors: number[][], documents: DocumentInterface[], options: { ids?: string[] } = {}): Promise<string[]> {
    try {
      return Promise.resolve(this.#add(vectors, documents, options));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #add(vectors: number[][], documents: DocumentInterface[], options: { ids?: string[] }): string[] {
    if (vectors.length !== documents.length) throw new RangeError(`addVectors: ${vectors.length} vectors for ${documents.length} documents`);
    if (vectors.length === 0) return [];
    const ids = documents.map((doc, i) => options.ids?.[i] ?? doc.id ?? crypto.randomUUID());
    const metadata = documents.map((doc, i) => {
      const user = doc.metadata ?? {};
      if (Object.hasOwn(user, PAGE_CONTENT_KEY)) throw new RangeError(`document ${i}: metadata key "${PAGE_CONTENT_KEY}" is reserved for the page content`);
      return { ...user, [PAGE_CONTENT_KEY]: doc.pageContent } as Metadata;
    });
    const d = vectors[0].length;
    vectors.forEach((v, i) => {
      if (v.length !== (this.#index?.dimensions ?? this.args.dimensions ?? d)) {
        throw new RangeError(`vector ${i} has ${v.length} dimensions, the store ${this.#index?.dimensions ?? this.args.dimensions ?? d}`);
      }
    });
    // One record per id: the last occurrence of a repeated id wins.
    const last = new Map<string, number>();
    ids.forEach((id, i) => last.set(id, i));
    const rows = [...last.values()].sort((a, b) => a - b);
    const index = this.#ensureIndex(d);
    const flat = new Float32Array(rows.length * index.dimensions);
    rows.forEach((row, j) => flat.set(vectors[row], j * index.dimensions));
    index.add(rows.map((r) => ids[r]), flat, { metadata: rows.map((r) => metadata[r]), threads: this.args.threads ?? 1 });
    return ids;
  }

  /** Embeds the documents' page content, then `addVectors`. */
  async addDocuments(documents: DocumentInterface[], options: { ids?: string[] } = {}): Promise<string[]> {
    const vectors = await this.embeddings.embedDocuments(documents.map((d) => d.pageContent));
    return this.addVectors(vectors, documents, options);
  }

  /** The Document of a record (a record added without metadata has empty page content). */
  static #document(id: string | number | bigint, stored: Metadata | undefined): Document {
    const { [PAGE_CONTENT_KEY]: text, ...metadata } = (stored ?? {}) as Record<string, unknown>;
    return new Document({ pageContent: typeof text === "string" ? text : "", metadata, id: String(id) });
  }

  /** The document of `id`, or undefined. O(d + metadata bytes). */
  getDocument(id: string): Document | undefined {
    const record = this.#index?.getRecord(id);
    return record === undefined ? undefined : QuiverVectorStore.#document(record.id, record.metadata);
  }

  /**
   * The k nearest documents to `query` that pass `filter`, closest first, with their distances.
   * Cost: one search, filtered natively for an object filter (k results whenever k documents
   * match); for a predicate, up to log4(n/k) searches of growing k.
   */
  similaritySearchVectorWithScore(query: number[], k: number, filter?: QuiverFilter): Promise<[Document, number][]> {
    try {
      return Promise.resolve(this.#search(query, k, filter));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #search(query: number[], k: number, filter?: QuiverFilter): [Document, number][] {
    const index = this.#index;
    if (!index || k < 1) return [];
    const size = index.size;
    if (size === 0) return [];
    const q = Float32Array.from(query);
    const ef = this.args.ef ?? 64;
    if (typeof filter !== "function") {
      const fetch = Math.min(k, size);
      const found = index.search(q, fetch, { ef: Math.max(ef, fetch), filter, includeMetadata: true });
      return found.ids.map((id, i) => [QuiverVectorStore.#document(id, found.metadata![i]), found.distances[i]]);
    }
    let fetch = Math.min(k, size);
    for (;;) {
      const found = index.search(q, fetch, { ef: Math.max(ef, fetch), includeMetadata: true });
      const hits: [Document, number][] = [];
      for (let i = 0; i < found.ids.length && hits.length < k; i++) {
        const doc = QuiverVectorStore.#document(found.ids[i], found.metadata![i]);
        if (filter(doc)) hits.push([doc, found.distances[i]]);
      }
      if (hits.length >= k || fetch >= size) return hits;
      fetch = Math.min(size, fetch * 4);
    }
  }

  /**
   * Removes the documents with these ids (unknown ids are ignored), and with `filter` (a Quiver
   * filter object, as for searches) every document that passes it. O(1) per id; a filter
   * O(matching documents).
   */
  delete(params: { ids?: string[]; filter?: Filter } = {}): Promise<void> {
    try {
      for (const id of params.ids ?? []) this.#index?.remove(id);
      if (params.filter !== undefined) this.#index?.deleteMany(params.filter);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Writes the store to `directory`: the index with its records (a consistent backup,
   * `index.qv` and its files) and the store's options (`quiver.json`). O(n).
   */
  save(directory: string): Promise<void> {
    mkdirSync(directory, { recursive: true });
    const target = join(directory, INDEX_FILE);
    if (existsSync(target)) return Promise.reject(new Error(`${directory} already holds a saved store: save into a new directory`));
    if (!this.#index) return Promise.reject(new Error("the store is empty: add documents before saving it"));
    this.#index.backup(target);
    const { path: _path, ...rest } = this.args;
    writeFileSync(join(directory, `${ARGS_FILE}~tmp`), JSON.stringify(rest));
    renameSync(join(directory, `${ARGS_FILE}~tmp`), join(directory, ARGS_FILE));
    return Promise.resolve();
  }

  /**
   * Opens a store written by `save`. The saved index is opened in place (mapped, not loaded):
   * later adds and deletes change the files in `directory`. O(1) in the documents.
   */
  static load(directory: string, embeddings: EmbeddingsInterface): Promise<QuiverVectorStore> {
    const target = join(directory, INDEX_FILE);
    if (!existsSync(target)) return Promise.reject(new Error(`${directory} holds no saved Quiver store (no ${INDEX_FILE})`));
    try {
      const args = JSON.parse(readFileSync(join(directory, ARGS_FILE), "utf-8")) as QuiverStoreArgs;
      return Promise.resolve(new QuiverVectorStore(embeddings, { ...args, path: target }));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A store of `texts`, embedded; `metadatas` is one object for all or one per text. */
  static async fromTexts(
    texts: string[],
    metadatas: object[] | object,
    embeddings: EmbeddingsInterface,
    args: QuiverStoreArgs = {},
  ): Promise<QuiverVectorStore> {
    const docs = texts.map((text, i) =>
      new Document({ pageContent: text, metadata: (Array.isArray(metadatas) ? metadatas[i] : metadatas) as Record<string, unknown> ?? {} })
    );
    return QuiverVectorStore.fromDocuments(docs, embeddings, args);
  }

  /** A store of `docs`, embedded. */
  static async fromDocuments(docs: DocumentInterface[], embeddings: EmbeddingsInterface, args: QuiverStoreArgs = {}): Promise<QuiverVectorStore> {
    const store = new QuiverVectorStore(embeddings, args);
    await store.addDocuments(docs);
    return store;
  }

  /** Closes the index (a persistent one checkpoints). Idempotent. */
  close(): void {
    this.#index?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
