/**
 * The TEXMEX formats of the SIFT/GIST corpora (http://corpus-texmex.irisa.fr/): every record is
 * a little-endian int32 dimension count d, then d components: float32 (.fvecs), uint8 (.bvecs)
 * or int32 (.ivecs, usually ground-truth neighbour ids). Every record must have the first
 * record's d; the file size must be a whole number of records.
 */
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from "node:fs";
import { FormatError } from "./errors.ts";
import { BinaryFile, checkFinite } from "./file.ts";
import { DEFAULT_BATCH, type Matrix, type VectorBatch, type VectorSource } from "./types.ts";

export type VecsKind = "fvecs" | "bvecs" | "ivecs";
const ELEMENT: Record<VecsKind, number> = { fvecs: 4, bvecs: 1, ivecs: 4 };

function kindOf(path: string, kind?: VecsKind): VecsKind {
  if (kind) return kind;
  const m = /\.(fvecs|bvecs|ivecs)$/i.exec(path);
  if (!m) throw new FormatError("UNKNOWN_FORMAT", path, "the name does not end in .fvecs, .bvecs or .ivecs: pass the kind");
  return m[1].toLowerCase() as VecsKind;
}

/**
 * Opens a .fvecs/.bvecs/.ivecs file (kind from the extension unless given): reads the first
 * record's d and checks the size is a whole number of records. Rows are read a batch at a time;
 * each record's own d is checked (BAD_RECORD if it differs). O(1) to open, O(n * d) to read.
 */
export function openVecs(path: string, kind?: VecsKind): Promise<VectorSource> {
  const k = kindOf(path, kind);
  const element = ELEMENT[k];
  const file = new BinaryFile(path);
  try {
    if (file.size === 0) throw new FormatError("TRUNCATED", path, `the file is empty: a .${k} file holds at least one record`, 0);
    const dimensions = new DataView(file.read(0, 4, "the first dimension count").buffer).getInt32(0, true);
    if (dimensions < 1 || dimensions > 65536) {
      throw new FormatError("BAD_HEADER", path, `the first record says ${dimensions} dimensions (1 to 65536 expected): is this a .${k} file?`, 0);
    }
    const recordBytes = 4 + dimensions * element;
    if (file.size % recordBytes !== 0) {
      throw new FormatError(
        "TRUNCATED",
        path,
        `${file.size} bytes are not whole records of ${recordBytes} bytes (d = ${dimensions}): the file is truncated or not a .${k} file`,
        file.size - (file.size % recordBytes),
      );
    }
    const count = file.size / recordBytes;
    const rows = (start: number, n: number): VectorBatch => {
      const bytes = file.read(start * recordBytes, n * recordBytes, `records ${start}..${start + n}`);
      const view = new DataView(bytes.buffer);
      const vectors = new Float32Array(n * dimensions);
      for (let r = 0; r < n; r++) {
        const at = r * recordBytes;
        const d = view.getInt32(at, true);
        if (d !== dimensions) {
          throw new FormatError("BAD_RECORD", path, `record ${start + r} says ${d} dimensions, the first said ${dimensions}`, start * recordBytes + at);
        }
        const out = r * dimensions;
        if (k === "fvecs") for (let j = 0; j < dimensions; j++) vectors[out + j] = view.getFloat32(at + 4 + 4 * j, true);
        else if (k === "ivecs") for (let j = 0; j < dimensions; j++) vectors[out + j] = view.getInt32(at + 4 + 4 * j, true);
        else for (let j = 0; j < dimensions; j++) vectors[out + j] = bytes[at + 4 + j];
      }
      if (k === "fvecs") checkFinite(vectors, dimensions, start, path);
      return { start, count: n, vectors, bytesRead: (start + n) * recordBytes };
    };
    return Promise.resolve({
      format: k,
      path,
      dimensions,
      count,
      bytes: file.size,
      async *batches(batchSize = DEFAULT_BATCH) {
        for (let start = 0; start < count; start += batchSize) yield rows(start, Math.min(batchSize, count - start));
      },
      row(index: number) {
        if (!Number.isInteger(index) || index < 0 || index >= count) {
          throw new RangeError(`${path}: row ${index} is out of range (the file has ${count} rows)`);
        }
        return Promise.resolve(rows(index, 1));
      },
      close: () => file.close(),
      [Symbol.dispose]: () => file.close(),
    });
  } catch (error) {
    file.close();
    throw error;
  }
}

/** Reads a whole .fvecs/.bvecs/.ivecs file into memory (see openVecs). O(n * d). */
export async function readVecs(path: string, kind?: VecsKind): Promise<Matrix> {
  using source = await openVecs(path, kind);
  const data = new Float32Array(source.count! * source.dimensions);
  for await (const batch of source.batches()) data.set(batch.vectors, batch.start * source.dimensions);
  return { data, count: source.count!, dimensions: source.dimensions };
}

/**
 * Writes a matrix as .fvecs (float32) or .ivecs (values truncated to int32) or .bvecs (values
 * clamped to 0..255), atomically (a temporary renamed into place). O(n * d).
 */
export function writeVecs(path: string, matrix: Matrix, kind?: VecsKind): void {
  const k = kindOf(path, kind);
  const { data, count, dimensions } = matrix;
  if (data.length !== count * dimensions) throw new RangeError(`${data.length} values are not ${count} rows of ${dimensions}`);
  const recordBytes = 4 + dimensions * ELEMENT[k];
  const bytes = new Uint8Array(count * recordBytes);
  const view = new DataView(bytes.buffer);
  for (let r = 0; r < count; r++) {
    const at = r * recordBytes;
    view.setInt32(at, dimensions, true);
    for (let j = 0; j < dimensions; j++) {
      const v = data[r * dimensions + j];
      if (k === "fvecs") view.setFloat32(at + 4 + 4 * j, v, true);
      else if (k === "ivecs") view.setInt32(at + 4 + 4 * j, v, true);
      else bytes[at + 4 + j] = Math.max(0, Math.min(255, Math.round(v)));
    }
  }
  const tmp = `${path}~tmp`;
  const fd = openSync(tmp, "w");
  try {
    for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
