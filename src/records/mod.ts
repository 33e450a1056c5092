/**
 * Records (issue #11): string ids, metadata and filters, the TypeScript side of the formats in
 * docs/records.md.
 *
 * - limits.ts: the bounds (ids, metadata, terms, fields, filter programs) and format versions.
 * - encode.ts: the schema (`indexes`), string ids, payloads (id + metadata + terms) and back.
 * - filter.ts: the filter language, validated and compiled into a filter program.
 * - reference.ts: the plain-JS meaning of a filter over metadata objects (the property test's
 *   oracle).
 *
 * Pure: these files import each other, ../errors.ts and ../ffi.gen.ts (data only), and nothing
 * that loads the native library; src/index.ts and src/reader.ts use them, never the reverse
 * (tests/records_unit.test.ts checks the imports).
 */
export * from "./limits.ts";
export * from "./encode.ts";
export * from "./filter.ts";
export * from "./reference.ts";
