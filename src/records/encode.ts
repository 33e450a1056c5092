/**
 * The byte formats of records that TypeScript writes and reads (docs/records.md): the schema
 * (`indexes`), string ids, and the payload of a record (its string id, its metadata as JSON, and
 * the terms of its indexed fields). Pure: no FFI; the native core validates what it is given.
 */
import { CorruptIndexError, InvalidArgumentError, InvalidKeyError, InvalidMetadataError } from "../errors.ts";
import { recordLimits, recordVersions } from "./limits.ts";

/** The kind of an indexed field: "keyword" (a string or strings), "number" (finite numbers). */
export type FieldKind = "keyword" | "number";
/** The indexed fields of an index, declared at creation: `{ lang: "keyword", year: "number" }`. */
export type Indexes = Record<string, FieldKind>;

/** The kind codes of the schema and term formats. */
export const kindCodes: Readonly<Record<FieldKind, number>> = { keyword: 1, number: 2 };
const kindNames: Readonly<Record<number, FieldKind>> = { 1: "keyword", 2: "number" };

/** A JSON-like metadata object (what `getRecord` and searches return). */
export type Metadata = { [field: string]: MetadataValue };
/**
 * What `add` and `update` take: any object, checked at run time (InvalidMetadataError for what
 * is not JSON-like), so that `Record<string, unknown>` and interfaces can be passed as they are.
 */
export type MetadataInput = Readonly<Record<string, unknown>>;
/** A metadata value: JSON (finite numbers only). */
export type MetadataValue = string | number | boolean | null | MetadataValue[] | { [field: string]: MetadataValue };

/** One field of a schema: its name, kind and position (the field number of terms and filters). */
export interface Field {
  readonly name: string;
  readonly kind: FieldKind;
  readonly number: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 of `text`, which must be well-formed (no lone surrogate: it has no UTF-8). */
function wellFormed(text: string): boolean {
  // String.prototype.isWellFormed is ES2024: Bun and Deno have it.
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** Field names that the filter language keeps for itself. */
function reservedName(name: string): boolean {
  return name === "allow" || name.startsWith("$");
}

/**
 * The indexed fields of an index. Made from `indexes` (validated: InvalidArgumentError) or read
 * back from the index (`RecordSchema.decode`). Fields are kept sorted by name, so two `indexes`
 * objects with the same fields in another order give the same bytes. Immutable.
 */
export class RecordSchema {
  readonly fields: readonly Field[];
  readonly #byName: ReadonlyMap<string, Field>;
  /** The schema's bytes (docs/records.md, "Schema"). */
  readonly bytes: Uint8Array;

  private constructor(fields: Field[], bytes: Uint8Array) {
    this.fields = fields;
    this.#byName = new Map(fields.map((f) => [f.name, f]));
    this.bytes = bytes;
  }

  /** The schema with no indexed field (an index created without `indexes`). */
  static readonly empty: RecordSchema = RecordSchema.fromIndexes({});

  /** Validates `indexes` (InvalidArgumentError naming the field) and encodes it. O(fields). */
  static fromIndexes(indexes: unknown): RecordSchema {
    if (indexes === null || typeof indexes !== "object" || Array.isArray(indexes)) {
      throw new InvalidArgumentError(`indexes must be an object of field names to "keyword" or "number", not ${describe(indexes)}`);
    }
    const names = Object.keys(indexes).sort();
    if (names.length > recordLimits.fieldsMax) {
      throw new InvalidArgumentError(`indexes declares ${names.length} fields (at most ${recordLimits.fieldsMax})`);
    }
    const fields: Field[] = [];
    const encodedNames: Uint8Array[] = [];
    for (const name of names) {
      const kind = (indexes as Record<string, unknown>)[name];
      if (kind !== "keyword" && kind !== "number") {
        throw new InvalidArgumentError(`indexes.${name} = ${describe(kind)} (use "keyword" or "number")`);
      }
      const bytes = encoder.encode(name);
      if (name.length === 0 || bytes.length > recordLimits.fieldNameBytesMax || !wellFormed(name)) {
        throw new InvalidArgumentError(`index field name ${JSON.stringify(name)}: 1 to ${recordLimits.fieldNameBytesMax} bytes of UTF-8`);
      }
      if (reservedName(name)) {
        throw new InvalidArgumentError(`index field name ${JSON.stringify(name)} is reserved by the filter language (no "allow", no leading "$")`);
      }
      fields.push({ name, kind, number: fields.length });
      encodedNames.push(bytes);
    }
    const out = new Uint8Array(2 + encodedNames.reduce((sum, b) => sum + 2 + b.length, 0));
    out[0] = recordVersions.schema;
    out[1] = fields.length;
    let at = 2;
    for (let i = 0; i < fields.length; i++) {
      out[at++] = kindCodes[fields[i].kind];
      out[at++] = encodedNames[i].length;
      out.set(encodedNames[i], at);
      at += encodedNames[i].length;
    }
    return new RecordSchema(fields, out);
  }

  /**
   * The schema of `bytes` as the native core stored it; zero bytes is the empty schema.
   * CorruptIndexError for bytes that are not a schema. O(bytes).
   */
  static decode(bytes: Uint8Array): RecordSchema {
    if (bytes.length === 0) return RecordSchema.empty;
    const bad = (what: string): never => {
      throw new CorruptIndexError(`the stored schema is malformed: ${what}`);
    };
    if (bytes.length < 2 || bytes[0] !== recordVersions.schema) bad(`version ${bytes[0]}`);
    const count = bytes[1];
    const fields: Field[] = [];
    let at = 2;
    for (let i = 0; i < count; i++) {
      if (at + 2 > bytes.length) bad("truncated");
      const kind = kindNames[bytes[at]];
      const length = bytes[at + 1];
      if (kind === undefined) bad(`field ${i} has kind ${bytes[at]}`);
      if (at + 2 + length > bytes.length) bad("truncated");
      let name = "";
      try {
        name = decoder.decode(bytes.subarray(at + 2, at + 2 + length));
      } catch {
        bad(`field ${i}'s name is not UTF-8`);
      }
      fields.push({ name, kind, number: i });
      at += 2 + length;
    }
    if (at !== bytes.length) bad("trailing bytes");
    return new RecordSchema(fields, bytes.slice());
  }

  /** The field called `name`, if indexed. O(1). */
  field(name: string): Field | undefined {
    return this.#byName.get(name);
  }

  /** The `indexes` object this schema was made from. */
  toIndexes(): Indexes {
    return Object.fromEntries(this.fields.map((f) => [f.name, f.kind]));
  }

  /** Whether both declare the same fields with the same kinds (byte equality). */
  equals(other: RecordSchema): boolean {
    return this.bytes.length === other.bytes.length && this.bytes.every((b, i) => b === other.bytes[i]);
  }
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "string":
      return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value)}`;
    case "number":
    case "boolean":
      return `${typeof value} ${String(value)}`;
    case "bigint":
      return `the bigint ${value}n`;
    case "undefined":
      return "undefined";
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
  }
  const name = Object.getPrototypeOf(value)?.constructor?.name;
  return name && name !== "Object" ? `a ${name}` : "an object";
}

/** `path` extended by a property name, as JavaScript would write it. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

// ---------------------------------------------------------------- ids

/**
 * The UTF-8 bytes of a string id, validated: 1 to `idBytesMax` (1024) bytes, well-formed
 * (InvalidKeyError otherwise, naming `where`). O(length).
 */
export function idBytes(id: string, where = "id"): Uint8Array {
  if (id.length === 0) throw new InvalidKeyError(`${where} is the empty string (a string id has 1 to ${recordLimits.idBytesMax} bytes)`);
  if (!wellFormed(id)) throw new InvalidKeyError(`${where} has a lone surrogate (a string id must be valid UTF-8)`);
  const bytes = encoder.encode(id);
  if (bytes.length > recordLimits.idBytesMax) {
    throw new InvalidKeyError(`${where} has ${bytes.length} bytes of UTF-8 (at most ${recordLimits.idBytesMax})`);
  }
  return bytes;
}

/**
 * String ids as one byte column and `count + 1` offsets (what `qv_hash_ids` takes). Each id is
 * validated as by `idBytes`; `where(i)` names the i-th in errors. O(total length).
 */
export function packIds(ids: readonly string[], where: (i: number) => string = (i) => `ids[${i}]`): { bytes: Uint8Array; offsets: Uint32Array } {
  const parts = ids.map((id, i) => idBytes(id, where(i)));
  const offsets = new Uint32Array(ids.length + 1);
  for (let i = 0; i < parts.length; i++) offsets[i + 1] = offsets[i] + parts[i].length;
  const bytes = new Uint8Array(offsets[ids.length]);
  for (let i = 0; i < parts.length; i++) bytes.set(parts[i], offsets[i]);
  return { bytes, offsets };
}

// ---------------------------------------------------------------- metadata

/** Nesting deeper than this is refused (it bounds the validator's recursion). */
const depthMax = 64;

/**
 * Throws InvalidMetadataError (with the path) unless `value` is JSON-like: strings, finite
 * numbers, booleans, null, arrays (without holes) and plain objects of them, without cycles
 * or undefined, nested at most 64 deep. O(size).
 */
export function checkMetadataValue(value: unknown, path: string, ancestors: Set<object> = new Set(), depth = 0): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) throw new InvalidMetadataError(`${value} is not a finite number (JSON has no NaN or Infinity)`, path);
      return;
    case "undefined":
      throw new InvalidMetadataError("undefined is not JSON (leave the field out, or use null)", path);
    case "bigint":
      throw new InvalidMetadataError(`the bigint ${value}n is not JSON (store it as a string, or as a number if it is safe)`, path);
    case "function":
    case "symbol":
      throw new InvalidMetadataError(`${describe(value)} is not JSON`, path);
  }
  if (value === null) return;
  const object = value as object;
  if (ancestors.has(object)) throw new InvalidMetadataError("a cycle: this object contains itself", path);
  if (depth >= depthMax) throw new InvalidMetadataError(`nested more than ${depthMax} levels deep`, path);
  ancestors.add(object);
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) {
      if (!(i in object)) throw new InvalidMetadataError("a hole in an array (JSON would turn it into null)", childPath(path, i));
      checkMetadataValue(object[i], childPath(path, i), ancestors, depth + 1);
    }
  } else {
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) {
      const hint = object instanceof Date ? " (store date.getTime() or date.toISOString())" : " (metadata holds plain objects only)";
      throw new InvalidMetadataError(`${describe(object)} is not JSON${hint}`, path);
    }
    if (Object.getOwnPropertySymbols(object).length > 0) throw new InvalidMetadataError("a symbol-keyed property is not JSON", path);
    for (const key of Object.keys(object)) checkMetadataValue((object as Record<string, unknown>)[key], childPath(path, key), ancestors, depth + 1);
  }
  ancestors.delete(object);
}

/** One indexed value of a record. */
export type Term = { field: Field; value: string | number };

/**
 * The terms of `metadata` (already checked JSON-like): the values of the schema's fields, in
 * field order, one per value, duplicates of a field dropped, -0 made 0. InvalidMetadataError
 * when an indexed field has the wrong type, a keyword is over 256 bytes, or there are more
 * than 256 terms. O(values).
 */
export function extractTerms(metadata: Metadata, schema: RecordSchema, path: string): Term[] {
  const terms: Term[] = [];
  for (const field of schema.fields) {
    if (!Object.hasOwn(metadata, field.name)) continue;
    const raw = metadata[field.name];
    const fieldPath = childPath(path, field.name);
    const values = Array.isArray(raw) ? raw : [raw];
    const seen = new Set<string | number>();
    for (let i = 0; i < values.length; i++) {
      const valuePath = Array.isArray(raw) ? childPath(fieldPath, i) : fieldPath;
      const value = field.kind === "keyword" ? keywordTerm(values[i], valuePath) : numberTerm(values[i], valuePath);
      if (seen.has(value)) continue;
      seen.add(value);
      terms.push({ field, value });
    }
  }
  if (terms.length > recordLimits.termsMax) {
    throw new InvalidMetadataError(`${terms.length} indexed values (at most ${recordLimits.termsMax} per record)`, path);
  }
  return terms;
}

function keywordTerm(value: unknown, path: string): string {
  if (typeof value !== "string") {
    throw new InvalidMetadataError(`${describe(value)}: this field is indexed as a keyword (a string, or an array of strings)`, path);
  }
  if (!wellFormed(value)) throw new InvalidMetadataError("an indexed keyword with a lone surrogate (it must be valid UTF-8)", path);
  if (utf8Length(value) > recordLimits.keywordBytesMax) {
    throw new InvalidMetadataError(`an indexed keyword of ${utf8Length(value)} bytes (at most ${recordLimits.keywordBytesMax})`, path);
  }
  return value;
}

function numberTerm(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new InvalidMetadataError(`${describe(value)}: this field is indexed as a number (a finite number, or an array of them)`, path);
  }
  return value === 0 ? 0 : value;
}

/** The UTF-8 length of a well-formed string, without encoding it. O(length). */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

// ---------------------------------------------------------------- payloads

/** The fixed header of a payload: version, pad, id_len, meta_len, term_count, pad. */
export const payloadHeaderBytes = 12;

/** A growable byte buffer (payload columns of a batch are written into one). */
export class ByteWriter {
  bytes: Uint8Array;
  view: DataView;
  length = 0;

  constructor(capacity = 256) {
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Makes room for `n` more bytes. Amortized O(1) per byte. */
  reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(value: number): void {
    this.reserve(1);
    this.bytes[this.length++] = value;
  }

  u16(value: number): void {
    this.reserve(2);
    this.view.setUint16(this.length, value, true);
    this.length += 2;
  }

  u32(value: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, value, true);
    this.length += 4;
  }

  u64(value: bigint): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, value, true);
    this.length += 8;
  }

  f64(value: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, value, true);
    this.length += 8;
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.bytes.set(bytes, this.length);
    this.length += bytes.length;
  }

  /** UTF-8 of a well-formed string, preceded by its length as a u16. */
  string16(text: string): void {
    const encoded = encoder.encode(text);
    this.u16(encoded.length);
    this.raw(encoded);
  }

  /** The bytes written so far (a view, not a copy). */
  result(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }
}

/**
 * Appends the payload of one record to `out` (docs/records.md, "Payload"): `id` (a string id,
 * or undefined for a numeric one, already validated by `idBytes`) and `metadata` (undefined for
 * none; validated here, InvalidMetadataError at `path`). Returns nothing; `out.length` moves
 * by the payload's size. Nothing is appended when it throws. O(size of the metadata).
 */
export function writePayload(out: ByteWriter, id: Uint8Array | undefined, metadata: unknown, schema: RecordSchema, path = "metadata"): void {
  let meta: Uint8Array | undefined;
  let terms: Term[] = [];
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
      throw new InvalidMetadataError(`${describe(metadata)}: metadata is an object of fields (or left out)`, path);
    }
    checkMetadataValue(metadata, path);
    const json = JSON.stringify(metadata);
    meta = encoder.encode(json);
    if (meta.length > recordLimits.metaBytesMax) {
      throw new InvalidMetadataError(`${meta.length} bytes of JSON (at most ${recordLimits.metaBytesMax})`, path);
    }
    // The terms come from the JSON that is stored, not from a second read of `metadata`: a
    // getter that answers differently each time would otherwise index values the stored
    // metadata does not hold (a filter then matching a record that does not say so).
    if (schema.fields.length > 0) terms = extractTerms(JSON.parse(json) as Metadata, schema, path);
  }
  const idLength = id?.length ?? 0;
  out.u8(recordVersions.payload);
  out.u8(0);
  out.u16(idLength);
  out.u32(meta?.length ?? 0);
  out.u16(terms.length);
  out.u16(0);
  if (id !== undefined) out.raw(id);
  if (meta !== undefined) out.raw(meta);
  for (const term of terms) {
    out.u8(term.field.number);
    out.u8(kindCodes[term.field.kind]);
    if (typeof term.value === "string") out.string16(term.value);
    else out.f64(term.value);
  }
}

/** The payload of one record as its own bytes (see writePayload). */
export function encodePayload(id: string | undefined, metadata: unknown, schema: RecordSchema, path = "metadata"): Uint8Array {
  const out = new ByteWriter(64);
  writePayload(out, id === undefined ? undefined : idBytes(id), metadata, schema, path);
  return out.result().slice();
}

/**
 * The payloads of a batch as one byte column and `count + 1` offsets (what
 * `qv_index_add_records` takes). `ids[i]` is a string id or undefined (numeric); `metadata[i]`
 * an object or undefined. Every record is validated before this returns: it throws for the
 * first bad one (path `metadata[i]...`). O(total size).
 */
export function encodePayloads(ids: readonly (string | undefined)[], metadata: readonly unknown[] | undefined, schema: RecordSchema): { bytes: Uint8Array; offsets: Uint32Array } {
  const count = ids.length;
  const out = new ByteWriter(count * 32 + 64);
  const offsets = new Uint32Array(count + 1);
  for (let i = 0; i < count; i++) {
    const id = ids[i];
    writePayload(out, id === undefined ? undefined : idBytes(id, `ids[${i}]`), metadata?.[i], schema, `metadata[${i}]`);
    if (out.length > 0xffff_ffff) throw new InvalidArgumentError("the batch's payloads pass 4 GiB: split it");
    offsets[i + 1] = out.length;
  }
  return { bytes: out.result(), offsets };
}

/** A payload read back: the string id (if any) and the metadata (if any). */
export interface DecodedPayload {
  id: string | undefined;
  metadata: Metadata | undefined;
}

/**
 * Reads the id and metadata of a payload (its terms are not needed: they come from the
 * metadata; `withMetadata` false skips the JSON). CorruptIndexError for bytes that are not a
 * payload. O(size of the metadata).
 */
export function decodePayload(bytes: Uint8Array, withMetadata = true): DecodedPayload {
  if (bytes.length === 0) return { id: undefined, metadata: undefined };
  const bad = (what: string): never => {
    throw new CorruptIndexError(`a stored record payload is malformed: ${what}`);
  };
  if (bytes.length < payloadHeaderBytes) bad(`${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] !== recordVersions.payload) bad(`version ${bytes[0]}`);
  const idLength = view.getUint16(2, true);
  const metaLength = view.getUint32(4, true);
  if (payloadHeaderBytes + idLength + metaLength > bytes.length) bad("lengths past its end");
  let id: string | undefined;
  let metadata: Metadata | undefined;
  try {
    if (idLength > 0) id = decoder.decode(bytes.subarray(payloadHeaderBytes, payloadHeaderBytes + idLength));
    if (metaLength > 0 && withMetadata) {
      metadata = JSON.parse(decoder.decode(bytes.subarray(payloadHeaderBytes + idLength, payloadHeaderBytes + idLength + metaLength)));
    }
  } catch {
    bad("its id or metadata is not UTF-8 JSON");
  }
  return { id, metadata };
}

/**
 * The terms of a payload (for tests and tools: the native core reads them itself). O(size).
 */
export function decodeTerms(bytes: Uint8Array): { field: number; kind: FieldKind; value: string | number }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint16(8, true);
  let at = payloadHeaderBytes + view.getUint16(2, true) + view.getUint32(4, true);
  const terms: { field: number; kind: FieldKind; value: string | number }[] = [];
  for (let i = 0; i < count; i++) {
    const field = bytes[at];
    const kind = kindNames[bytes[at + 1]];
    at += 2;
    if (kind === "keyword") {
      const length = view.getUint16(at, true);
      terms.push({ field, kind, value: decoder.decode(bytes.subarray(at + 2, at + 2 + length)) });
      at += 2 + length;
    } else {
      terms.push({ field, kind, value: view.getFloat64(at, true) });
      at += 8;
    }
  }
  if (at !== bytes.length) throw new CorruptIndexError("a payload has trailing bytes");
  return terms;
}
