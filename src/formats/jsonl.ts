/**
 * JSON Lines: one JSON object per line, `{"id": ..., "vector": [...], "metadata": {...}}` (the
 * field names are options). Read in chunks of 1 MiB, never whole. Blank lines are skipped.
 *
 * Ids: a non-negative safe integer (it becomes the key), a string (kept as written: the CLI and
 * the LangChain store map strings to keys, see docs/cli.md), or absent in every line (the row
 * number is the key). The first record decides which; a file that mixes them is BAD_RECORD.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { FormatError } from "./errors.ts";
import { DEFAULT_BATCH, type VectorBatch, type VectorSource } from "./types.ts";

export interface JsonlOptions {
  /** Field holding the id (default "id"). */
  idField?: string;
  /** Field holding the vector, an array of numbers (default "vector"). */
  vectorField?: string;
  /** Field holding the metadata, any JSON value (default "metadata"). */
  metadataField?: string;
}

interface Record {
  id: bigint | string | undefined;
  vector: Float32Array;
  metadata: unknown;
}

const CHUNK = 1 << 20;

/** Lines of a file, streamed: yields [1-based line number, text, bytes consumed through it]. */
function* lines(path: string): Generator<[number, string, number]> {
  const fd = openSync(path, "r");
  try {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    const buffer = new Uint8Array(CHUNK);
    let partial = "";
    let line = 0;
    let consumed = 0;
    let position = 0;
    for (;;) {
      const n = readSync(fd, buffer, 0, CHUNK, position);
      position += n;
      let text: string;
      try {
        text = partial + decoder.decode(buffer.subarray(0, n), { stream: n > 0 });
      } catch {
        throw new FormatError("BAD_RECORD", path, `line ${line + 1}: the bytes are not valid UTF-8`, line + 1);
      }
      const parts = text.split("\n");
      partial = n > 0 ? parts.pop()! : "";
      for (const part of parts) {
        line++;
        consumed += new TextEncoder().encode(part).length + 1;
        yield [line, part, Math.min(consumed, position)];
      }
      if (n === 0) break;
    }
  } finally {
    closeSync(fd);
  }
}

function parseRecord(
  text: string,
  line: number,
  path: string,
  fields: Required<JsonlOptions>,
  dimensions: number | undefined,
): Record {
  const bad = (why: string): never => {
    throw new FormatError("BAD_RECORD", path, `line ${line}: ${why}`, line);
  };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    bad(`not valid JSON (${(error as Error).message}); each line must be one JSON object`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) bad("not a JSON object");
  const object = value as { [key: string]: unknown };
  const raw = object[fields.vectorField];
  if (!Array.isArray(raw)) bad(`no "${fields.vectorField}" array (use --vector-field to name the vector's field)`);
  const array = raw as unknown[];
  if (array.length === 0 || array.length > 65536) bad(`"${fields.vectorField}" has ${array.length} components (1 to 65536 expected)`);
  if (dimensions !== undefined && array.length !== dimensions) {
    bad(`"${fields.vectorField}" has ${array.length} components, the first record has ${dimensions}`);
  }
  const vector = new Float32Array(array.length);
  for (let j = 0; j < array.length; j++) {
    const x = array[j];
    if (typeof x !== "number") bad(`component ${j} of "${fields.vectorField}" is ${JSON.stringify(x)}, not a number`);
    vector[j] = x as number;
    if (!Number.isFinite(vector[j])) bad(`component ${j} of "${fields.vectorField}" (${x}) does not fit a float32`);
  }
  const idValue = object[fields.idField];
  let id: bigint | string | undefined;
  if (idValue === undefined || idValue === null) id = undefined;
  else if (typeof idValue === "string") {
    if (idValue.length === 0) bad(`"${fields.idField}" is an empty string`);
    id = idValue;
  } else if (typeof idValue === "number" && Number.isSafeInteger(idValue) && idValue >= 0) id = BigInt(idValue);
  else bad(`"${fields.idField}" is ${JSON.stringify(idValue)}: an id is a non-negative integer below 2^53 or a string`);
  return { id, vector, metadata: object[fields.metadataField] };
}

function idKind(id: bigint | string | undefined): string {
  return id === undefined ? "absent" : typeof id === "string" ? "a string" : "an integer";
}

/**
 * Opens a JSON Lines file: reads up to its first record to learn the dimensions (a file without
 * records is BAD_RECORD). `batches` streams the file again from the start, 1 MiB of text and one
 * batch of records in memory at a time. `count` is undefined: use `bytesRead` / `bytes` for
 * progress. Cost: O(first record) to open, O(file) to read.
 */
export async function openJsonl(path: string, options: JsonlOptions = {}): Promise<VectorSource> {
  const fields: Required<JsonlOptions> = {
    idField: options.idField ?? "id",
    vectorField: options.vectorField ?? "vector",
    metadataField: options.metadataField ?? "metadata",
  };
  const fd = openSync(path, "r");
  const bytes = fstatSync(fd).size;
  closeSync(fd);
  let dimensions: number | undefined;
  for (const [line, text] of lines(path)) {
    if (text.trim() === "") continue;
    dimensions = parseRecord(text.replace(/^\uFEFF/, ""), line, path, fields, undefined).vector.length;
    break;
  }
  if (dimensions === undefined) throw new FormatError("BAD_RECORD", path, "the file has no records (one JSON object per line)", 0);
  const d = dimensions;

  async function* records(): AsyncGenerator<[Record, number]> {
    let first: string | undefined;
    let row = 0;
    for (const [line, text, consumed] of lines(path)) {
      if (text.trim() === "") continue;
      const record = parseRecord(row === 0 ? text.replace(/^\uFEFF/, "") : text, line, path, fields, d);
      const kind = idKind(record.id);
      first ??= kind;
      if (kind !== first) {
        throw new FormatError("BAD_RECORD", path, `line ${line}: the id is ${kind} but the first record's was ${first}: use one kind for every line`, line);
      }
      row++;
      yield [record, consumed];
    }
  }

  const source: VectorSource = {
    format: "jsonl",
    path,
    dimensions: d,
    count: undefined,
    bytes,
    async *batches(batchSize = DEFAULT_BATCH) {
      let pending: Record[] = [];
      let start = 0;
      let consumed = 0;
      const flush = (): VectorBatch => {
        const vectors = new Float32Array(pending.length * d);
        pending.forEach((r, i) => vectors.set(r.vector, i * d));
        const hasIds = pending[0].id !== undefined;
        const batch: VectorBatch = {
          start,
          count: pending.length,
          vectors,
          ids: hasIds ? pending.map((r) => r.id!) : undefined,
          metadata: pending.map((r) => r.metadata),
          bytesRead: consumed,
        };
        start += pending.length;
        pending = [];
        return batch;
      };
      for await (const [record, at] of records()) {
        pending.push(record);
        consumed = at;
        if (pending.length === batchSize) yield flush();
      }
      if (pending.length > 0) yield flush();
    },
    async row(index: number) {
      if (!Number.isInteger(index) || index < 0) throw new RangeError(`${path}: row ${index} is not a row number`);
      let row = 0;
      for await (const [record, at] of records()) {
        if (row++ === index) {
          return {
            start: index,
            count: 1,
            vectors: record.vector,
            ids: record.id === undefined ? undefined : [record.id],
            metadata: [record.metadata],
            bytesRead: at,
          };
        }
      }
      throw new RangeError(`${path}: row ${index} is out of range (the file has ${row} rows)`);
    },
    close() {},
    [Symbol.dispose]() {},
  };
  return source;
}

/** One line of a JSON Lines export. */
export interface JsonlRecord {
  id: bigint | number | string;
  vector: ArrayLike<number>;
  metadata?: unknown;
}

/**
 * A streamed JSON Lines writer: `{"id", "vector", "metadata"}` per line (bigint ids are written
 * as JSON numbers when safe, else as strings of digits). Writes `path~tmp`, fsyncs and renames
 * it into place on close; `abort()` drops it. Not thread-safe. Cost: O(bytes written).
 */
export class JsonlWriter {
  readonly path: string;
  #fd: number | undefined;
  #tmp: string;
  #buffer: string[] = [];
  #buffered = 0;

  constructor(path: string) {
    this.path = path;
    this.#tmp = `${path}~tmp`;
    this.#fd = openSync(this.#tmp, "w");
  }

  /** Appends one record. Float32 values are written with the shortest digits that round-trip. */
  write(record: JsonlRecord): void {
    if (this.#fd === undefined) throw new Error(`${this.path}: write after close`);
    const id = typeof record.id === "bigint" ? (record.id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(record.id) : record.id.toString()) : record.id;
    const vector = Array.from(record.vector, (x) => Math.fround(x));
    const line: { id: unknown; vector: number[]; metadata?: unknown } = { id, vector };
    if (record.metadata !== undefined) line.metadata = record.metadata;
    const text = JSON.stringify(line) + "\n";
    this.#buffer.push(text);
    this.#buffered += text.length;
    if (this.#buffered > CHUNK) this.#flush();
  }

  #flush(): void {
    const bytes = new TextEncoder().encode(this.#buffer.join(""));
    for (let done = 0; done < bytes.length;) done += writeSync(this.#fd!, bytes, done, bytes.length - done);
    this.#buffer = [];
    this.#buffered = 0;
  }

  /** Flushes, fsyncs and renames the file into place. Idempotent. */
  close(): void {
    if (this.#fd === undefined) return;
    this.#flush();
    fsyncSync(this.#fd);
    closeSync(this.#fd);
    this.#fd = undefined;
    renameSync(this.#tmp, this.path);
  }

  /** Drops what was written. Idempotent. */
  abort(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    rmSync(this.#tmp, { force: true });
  }
}
