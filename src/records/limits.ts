/**
 * The bounds of records (docs/records.md). The native ones come from the generated table when it
 * has them; the fallbacks are the values docs/records.md states (the native core checks them
 * again, so a drift between the two is an error from native code, never a silent truncation).
 */
import { limits } from "../ffi.gen.ts";

const table = limits as Readonly<Record<string, number>>;

export const recordLimits = {
  /** A string id: 1 to this many bytes of UTF-8. */
  idBytesMax: table.idBytesMax ?? 1024,
  /** A record's metadata: at most this many bytes of JSON (UTF-8). */
  metaBytesMax: table.metaBytesMax ?? 65536,
  /** Indexed values (terms) per record. */
  termsMax: table.termsMax ?? 256,
  /** An indexed keyword value: 0 to this many bytes of UTF-8. */
  keywordBytesMax: table.keywordBytesMax ?? 256,
  /** Fields in a schema (`indexes`). */
  fieldsMax: table.fieldsMax ?? 32,
  /** A field name: 1 to this many bytes of UTF-8. */
  fieldNameBytesMax: table.fieldNameBytesMax ?? 64,
  /** Ops of one filter program. */
  filterOpsMax: table.filterOpsMax ?? 4096,
  /** The evaluation stack of one filter program. */
  filterStackMax: table.filterStackMax ?? 64,
  /** The bytes of one filter program. */
  filterBytesMax: table.filterBytesMax ?? 8 * 1024 * 1024,
} as const;

/** The format versions of docs/records.md. */
export const recordVersions = { schema: 1, payload: 1, filter: 1 } as const;
