/**
 * QuiverVectorStore: Quiver as a LangChain.js vector store (`@langchain/core`'s VectorStore).
 *
 * The core stores u64 keys and vectors only, so the store keeps each document's id, page content
 * and metadata in the index's sidecar (src/docstore.ts: `<index>.docs.jsonl`, rewritten
 * atomically). A persistent store rewrites the sidecar after every `addVectors` and `delete`
 * (O(documents) each); an in-memory store writes it on `save`. Scores are the index's distances:
 * lower is closer (cosine distance 1 - cos by default).
 *
 * @langchain/core is an optional peer dependency: only this module imports it.
 */
import { VectorStore } from "@langchain/core/vectorstores";
import { Document, type DocumentInterface } from "@langchain/core/documents";
import type { EmbeddingsInterface } from "@langchain/core/embeddings";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Index, type Metric, type Storage } from "../mod.ts";
import { type DocEntry, DocStore, docsPath, filteredSearch, matchesFilter } from "./docstore.ts";

/**
 * A metadata filter: an object whose every field must equal (as JSON) the document's metadata
 * field of the same name, or a predicate on the Document. Applied to the index's candidates: the
 * store searches for k, then 4k, 16k, ... until k documents pass (see filteredSearch).
 */
export type QuiverFilter = Record<string, unknown> | ((document: DocumentInterface) => boolean);

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
}

const INDEX_FILE = "index.qv";
const ARGS_FILE = "quiver.json";

/** A LangChain.js vector store on a Quiver index. Not thread-safe: use it from one thread. */
export class QuiverVectorStore extends VectorStore {
  declare FilterType: QuiverFilter;
  readonly args: QuiverStoreArgs;
  #index: Index | undefined;
  #docs: DocStore;

  _vectorstoreType(): string {
    return "quiver";
  }

  constructor(embeddings: EmbeddingsInterface, args: QuiverStoreArgs = {}) {
    super(embeddings, args);
    this.args = { metric: "cosine", ...args };
    this.#docs = args.path ? DocStore.load(args.path) : DocStore.empty("<memory>");
    if (args.path && existsSync(args.path)) this.#index = Index.open(args.path, { create: false });
  }

  /** The index (undefined until the first vectors fix the dimensions). */
  get index(): Index | undefined {
    return this.#index;
  }

  /** Documents in the store. O(1). */
  get size(): number {
    return this.#docs.size;
  }

  #ensureIndex(dimensions: number): Index {
    if (this.#index) return this.#index;
    const a = this.args;
    const options = { dimensions: a.dimensions ?? dimensions, metric: a.metric, m: a.m, efConstruction: a.efConstruction, storage: a.storage };
    this.#index = a.path ? Index.open(a.path, options) : new Index(options);
    return this.#index;
  }

  #persist(): void {
    if (this.args.path) this.#docs.save();
  }

  /**
   * Adds vectors with their documents; `options.ids` (or each document's `id`) names them, else
   * a random UUID does. An id already in the store is replaced (upsert). Returns the ids.
   * Cost: one batch insert, O(efConstruction log n) per vector, plus the sidecar rewrite.
   */
  addVectors(vectors: number[][], documents: DocumentInterface[], options: { ids?: string[] } = {}): Promise<string[]> {
    if (vectors.length !== documents.length) {
      return Promise.reject(new RangeError(`addVectors: ${vectors.length} vectors for ${documents.length} documents`));
    }
    if (vectors.length === 0) return Promise.resolve([]);
    const d = vectors[0].length;
    const index = this.#ensureIndex(d);
    const flat = new Float32Array(vectors.length * index.dimensions);
    const keys = new BigUint64Array(vectors.length);
    const ids: string[] = [];
    let next = this.#docs.nextKey();
    const fresh = new Map<string, bigint>();
    vectors.forEach((v, i) => {
      if (v.length !== index.dimensions) throw new RangeError(`vector ${i} has ${v.length} dimensions, the store ${index.dimensions}`);
      flat.set(v, i * index.dimensions);
      const id = options.ids?.[i] ?? documents[i].id ?? crypto.randomUUID();
      const key = this.#docs.keyOf(id) ?? fresh.get(id) ?? next++;
      fresh.set(id, key);
      keys[i] = key;
      ids.push(id);
    });
    index.add(keys, flat, { threads: this.args.threads ?? 1 });
    documents.forEach((doc, i) => {
      const entry: DocEntry = { id: ids[i], text: doc.pageContent };
      if (doc.metadata !== undefined && Object.keys(doc.metadata).length > 0) entry.metadata = doc.metadata;
      this.#docs.set(keys[i], entry);
    });
    this.#persist();
    return Promise.resolve(ids);
  }

  /** Embeds the documents' page content, then `addVectors`. */
  async addDocuments(documents: DocumentInterface[], options: { ids?: string[] } = {}): Promise<string[]> {
    const vectors = await this.embeddings.embedDocuments(documents.map((d) => d.pageContent));
    return this.addVectors(vectors, documents, options);
  }

  #document(key: bigint): Document | undefined {
    const entry = this.#docs.get(key);
    if (!entry) return undefined;
    return new Document({ pageContent: entry.text ?? "", metadata: (entry.metadata as Record<string, unknown>) ?? {}, id: entry.id });
  }

  /**
   * The k nearest documents to `query` that pass `filter`, closest first, with their distances.
   * Cost: one search without a filter; with one, up to log4(n/k) searches of growing k.
   */
  similaritySearchVectorWithScore(query: number[], k: number, filter?: QuiverFilter): Promise<[Document, number][]> {
    const index = this.#index;
    if (!index || index.size === 0 || k < 1) return Promise.resolve([]);
    const q = Float32Array.from(query);
    const accept = (key: bigint): boolean => {
      if (filter === undefined) return this.#docs.get(key) !== undefined;
      if (typeof filter === "function") {
        const doc = this.#document(key);
        return doc !== undefined && filter(doc);
      }
      const entry = this.#docs.get(key);
      return entry !== undefined && matchesFilter(filter, { key, ...entry });
    };
    const { keys, distances } = filteredSearch(index, q, k, accept, this.args.ef);
    return Promise.resolve(keys.map((key, i) => [this.#document(key)!, distances[i]]));
  }

  /** Removes the documents with these ids (unknown ids are ignored). O(1) each, plus the sidecar rewrite. */
  delete(params: { ids?: string[] } = {}): Promise<void> {
    for (const id of params.ids ?? []) {
      const key = this.#docs.keyOf(id);
      if (key === undefined) continue;
      this.#index?.remove(key);
      this.#docs.delete(key);
    }
    this.#persist();
    return Promise.resolve();
  }

  /**
   * Writes the store to `directory`: the index (a consistent backup, `index.qv` and its files),
   * the sidecar and the store's options (`quiver.json`). O(n).
   */
  save(directory: string): Promise<void> {
    mkdirSync(directory, { recursive: true });
    const target = join(directory, INDEX_FILE);
    if (existsSync(target)) throw new Error(`${directory} already holds a saved store: save into a new directory`);
    if (!this.#index) throw new Error("the store is empty: add documents before saving it");
    this.#index.backup(target);
    this.#docs.save(docsPath(target));
    const { path: _path, ...rest } = this.args;
    writeFileSync(join(directory, `${ARGS_FILE}~tmp`), JSON.stringify(rest));
    renameSync(join(directory, `${ARGS_FILE}~tmp`), join(directory, ARGS_FILE));
    return Promise.resolve();
  }

  /**
   * Opens a store written by `save`. The saved index is opened in place (mapped, not loaded):
   * later adds and deletes change the files in `directory`. O(documents) for the sidecar.
   */
  static load(directory: string, embeddings: EmbeddingsInterface): Promise<QuiverVectorStore> {
    const target = join(directory, INDEX_FILE);
    if (!existsSync(target)) return Promise.reject(new Error(`${directory} holds no saved Quiver store (no ${INDEX_FILE})`));
    const args = JSON.parse(readFileSync(join(directory, ARGS_FILE), "utf-8")) as QuiverStoreArgs;
    return Promise.resolve(new QuiverVectorStore(embeddings, { ...args, path: target }));
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
