/**
 * The bounds of records (docs/records.md). The native ones come from the generated table; the
 * filter program's bounds, which the table does not carry, are docs/records.md's (the native
 * core checks every bound again, so a drift is an error from native code, never a silent
 * truncation).
 */
import { limits } from "../ffi.gen.ts";

export const recordLimits = {
  /** A string id: 1 to this many bytes of UTF-8. */
  idBytesMax: limits.idBytesMax,
  /** A record's metadata: at most this many bytes of JSON (UTF-8). */
  metaBytesMax: limits.metaBytesMax,
  /** Indexed values (terms) per record. */
  termsMax: limits.termsMax,
  /** An indexed keyword value: 0 to this many bytes of UTF-8. */
  keywordBytesMax: limits.keywordBytesMax,
  /** Fields in a schema (`indexes`). */
  fieldsMax: limits.fieldsMax,
  /** A field name: 1 to this many bytes of UTF-8. */
  fieldNameBytesMax: limits.fieldNameBytesMax,
  /** Ops of one filter program. */
  filterOpsMax: 4096,
  /** The evaluation stack of one filter program. */
  filterStackMax: 64,
  /** The bytes of one filter program. */
  filterBytesMax: 8 * 1024 * 1024,
} as const;

/** The format versions of docs/records.md. */
export const recordVersions = { schema: 1, payload: 1, filter: 1 } as const;
