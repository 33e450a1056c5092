/**
 * Quiver's readers and writers of standard vector files, a separate entry so that programs that
 * only read files load no native library:
 *
 *   import { openVectors, readNpy, writeNpy, FormatError } from "./formats.ts";
 *   using source = await openVectors("vectors.npy");
 *   for await (const batch of source.batches(4096)) index.add(keysOf(batch), batch.vectors);
 *
 * Every reader checks every length against the file size before reading and every value before
 * returning it; a malformed file throws FormatError (stable `code`), never a crash.
 */
export { FormatError, type FormatErrorCode } from "./src/formats/errors.ts";
export { DEFAULT_BATCH, type Matrix, type VectorBatch, type VectorSource } from "./src/formats/types.ts";
export { type NpyHeader, NpyWriter, openNpy, readNpy, writeNpy } from "./src/formats/npy.ts";
export { openVecs, readVecs, type VecsKind, writeVecs } from "./src/formats/vecs.ts";
export { type JsonlOptions, type JsonlRecord, JsonlWriter, openJsonl } from "./src/formats/jsonl.ts";
export { type Hdf5Options, type Hdf5Source, metricOfDistance, openHdf5, writeHdf5 } from "./src/formats/hdf5.ts";
export { openIdx, parseIdx, readIdx } from "./src/formats/idx.ts";
export { type FormatName, formatOf, openVectors, type OpenVectorsOptions, readVectors } from "./src/formats/open.ts";
