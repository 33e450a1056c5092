/**
 * The sidecar of an index: what the core does not store yet (string ids, metadata, document
 * text), kept beside the index in `<index>.docs.jsonl`, one JSON object per key:
 *
 *   {"key": "17", "id": "doc-17", "text": "...", "metadata": {"lang": "en"}}
 *
 * `key` is the u64 key in the index as a decimal string; every other field is optional. The
 * file is rewritten whole and atomically (a temporary, fsynced, renamed over the old one, and the
 * directory fsynced), so a crash leaves the old sidecar or the new one, never a torn one. It is
 * loaded whole into memory: O(entries) memory. The CLI uses it (the LangChain store used to,
 * and now keeps native records; it only checks for a sidecar, to refuse one); once
 * the CLI moves onto the core's records, it goes away.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { FormatError } from "./formats/errors.ts";

/** What the sidecar keeps for one key. */
export interface DocEntry {
  /** The caller's id (a string) when it is not the key itself. */
  id?: string;
  /** Document text (what earlier LangChain stores kept as pageContent). */
  text?: string;
  /** Any JSON value. */
  metadata?: unknown;
}

/** A filter over metadata: a predicate, or an object whose every field must equal the metadata's. */
export type MetadataFilter = ((metadata: unknown, entry: DocEntry & { key: bigint }) => boolean) | Record<string, unknown>;

/** The sidecar's path for an index at `indexPath`. */
export function docsPath(indexPath: string): string {
  return `${indexPath}.docs.jsonl`;
}

function equalJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object), kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => equalJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/**
 * Whether `metadata` passes `filter`: a function is called; an object matches when each of its
 * fields deep-equals (as JSON) the same field of the metadata (`{}` matches everything). O(size
 * of the filter) for an object filter.
 */
export function matchesFilter(filter: MetadataFilter | undefined, entry: DocEntry & { key: bigint }): boolean {
  if (filter === undefined) return true;
  if (typeof filter === "function") return filter(entry.metadata, entry);
  const metadata = entry.metadata;
  if (metadata === null || typeof metadata !== "object") return Object.keys(filter).length === 0;
  return Object.entries(filter).every(([k, v]) => equalJson((metadata as Record<string, unknown>)[k], v));
}

/** The sidecar in memory. Not thread-safe: one writer (the process that owns the index). */
export class DocStore {
  readonly path: string;
  readonly #entries = new Map<bigint, DocEntry>();
  readonly #byId = new Map<string, bigint>();
  #dirty = false;

  private constructor(path: string) {
    this.path = path;
  }

  /** An empty sidecar for the index at `indexPath` (whatever is on disk is replaced on save). */
  static empty(indexPath: string): DocStore {
    return new DocStore(docsPath(indexPath));
  }

  /**
   * Loads the sidecar of the index at `indexPath` (empty if it has none). FormatError
   * BAD_RECORD names the line of a malformed entry. O(file).
   */
  static load(indexPath: string): DocStore {
    const store = new DocStore(docsPath(indexPath));
    if (!existsSync(store.path)) return store;
    const lines = readFileSync(store.path, "utf-8").split("\n");
    lines.forEach((text, i) => {
      if (text.trim() === "") return;
      let value: { key?: unknown; id?: unknown; text?: unknown; metadata?: unknown };
      try {
        value = JSON.parse(text);
      } catch {
        throw new FormatError("BAD_RECORD", store.path, `line ${i + 1} is not JSON: the sidecar is damaged (restore it from a backup)`, i + 1);
      }
      if (typeof value?.key !== "string" || !/^(0|[1-9][0-9]{0,19})$/.test(value.key) || BigInt(value.key) >= 2n ** 64n) {
        throw new FormatError("BAD_RECORD", store.path, `line ${i + 1} has no valid "key": the sidecar is damaged`, i + 1);
      }
      if (value.id !== undefined && typeof value.id !== "string") {
        throw new FormatError("BAD_RECORD", store.path, `line ${i + 1}: "id" is not a string`, i + 1);
      }
      const entry: DocEntry = {};
      if (value.id !== undefined) entry.id = value.id as string;
      if (typeof value.text === "string") entry.text = value.text;
      if (value.metadata !== undefined) entry.metadata = value.metadata;
      store.set(BigInt(value.key), entry);
    });
    store.#dirty = false;
    return store;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Whether anything changed since load or the last save. */
  get dirty(): boolean {
    return this.#dirty;
  }

  /** The entry of `key`, if any. O(1). */
  get(key: bigint): DocEntry | undefined {
    return this.#entries.get(key);
  }

  /** The key of a string id, if any. O(1). */
  keyOf(id: string): bigint | undefined {
    return this.#byId.get(id);
  }

  /** Sets (replaces) the entry of `key`; an id already used by another key is an error. O(1). */
  set(key: bigint, entry: DocEntry): void {
    if (entry.id !== undefined) {
      const other = this.#byId.get(entry.id);
      if (other !== undefined && other !== key) throw new RangeError(`id "${entry.id}" is already the id of key ${other}`);
    }
    const old = this.#entries.get(key);
    if (old?.id !== undefined) this.#byId.delete(old.id);
    this.#entries.set(key, entry);
    if (entry.id !== undefined) this.#byId.set(entry.id, key);
    this.#dirty = true;
  }

  /** Removes the entry of `key`. O(1). */
  delete(key: bigint): boolean {
    const old = this.#entries.get(key);
    if (old === undefined) return false;
    if (old.id !== undefined) this.#byId.delete(old.id);
    this.#entries.delete(key);
    this.#dirty = true;
    return true;
  }

  /** One more than the largest key with an entry (0 when empty). O(entries). */
  nextKey(): bigint {
    let next = 0n;
    for (const key of this.#entries.keys()) if (key >= next) next = key + 1n;
    return next;
  }

  entries(): IterableIterator<[bigint, DocEntry]> {
    return this.#entries.entries();
  }

  /**
   * Writes the sidecar atomically to `path` (default: its own) and fsyncs it and its directory.
   * An empty store removes the file. O(entries).
   */
  save(path = this.path): void {
    if (this.#entries.size === 0) {
      rmSync(path, { force: true });
      this.#dirty = false;
      return;
    }
    const tmp = `${path}~tmp`;
    const fd = openSync(tmp, "w");
    try {
      let chunk: string[] = [];
      const flush = () => {
        const bytes = new TextEncoder().encode(chunk.join(""));
        for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
        chunk = [];
      };
      for (const [key, entry] of this.#entries) {
        chunk.push(JSON.stringify({ key: key.toString(), ...entry }) + "\n");
        if (chunk.length >= 4096) flush();
      }
      flush();
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    try {
      const dir = openSync(dirname(path), "r");
      fsyncSync(dir);
      closeSync(dir);
    } catch {
      // Some file systems cannot fsync a directory; the rename is still atomic.
    }
    if (path === this.path) this.#dirty = false;
  }
}

/** What `filteredSearch` needs of an index. */
export interface Searchable {
  readonly size: number;
  search(query: Float32Array, k: number, options?: { ef?: number }): { keys: BigUint64Array; distances: Float32Array };
}

/**
 * The k nearest keys that `accept` takes, closest first. Searches for k, then 4k, 16k, ...
 * candidates (ef raised to match) until k are accepted or the whole index was asked for; a
 * selective filter therefore costs more searches. Cost: O(log(n/k)) searches at worst.
 */
export function filteredSearch(
  index: Searchable,
  query: Float32Array,
  k: number,
  accept: (key: bigint) => boolean,
  ef?: number,
): { keys: bigint[]; distances: number[] } {
  const size = index.size;
  let fetch = Math.min(k, size);
  for (;;) {
    if (fetch === 0) return { keys: [], distances: [] };
    const found = index.search(query, fetch, { ef: Math.max(ef ?? 64, fetch) });
    const keys: bigint[] = [];
    const distances: number[] = [];
    for (let i = 0; i < found.keys.length && keys.length < k; i++) {
      if (accept(found.keys[i])) {
        keys.push(found.keys[i]);
        distances.push(found.distances[i]);
      }
    }
    if (keys.length >= k || fetch >= size) return { keys, distances };
    fetch = Math.min(size, fetch * 4);
  }
}
