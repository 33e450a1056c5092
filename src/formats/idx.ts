/**
 * The idx format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/): two zero bytes,
 * a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the
 * number of dimensions, then each dimension as a big-endian uint32, then the values big-endian.
 * The first dimension counts the rows; a row is the product of the others (28 x 28 images are
 * 784-dimensional vectors). Gzipped files (.gz) are decompressed whole in memory first.
 */
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { FormatError } from "./errors.ts";
import { checkFinite } from "./file.ts";
import { DEFAULT_BATCH, type Matrix, type VectorSource } from "./types.ts";

const TYPES: Record<number, { size: number; name: string }> = {
  0x08: { size: 1, name: "uint8" },
  0x09: { size: 1, name: "int8" },
  0x0b: { size: 2, name: "int16" },
  0x0c: { size: 4, name: "int32" },
  0x0d: { size: 4, name: "float32" },
  0x0e: { size: 8, name: "float64" },
};

/** Parses idx bytes (already decompressed). O(bytes). */
export function parseIdx(bytes: Uint8Array, path = "<idx>"): Matrix {
  if (bytes.length < 4) throw new FormatError("TRUNCATED", path, `${bytes.length} bytes: an idx file starts with a 4-byte magic`, bytes.length);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = TYPES[bytes[2]];
  if (bytes[0] !== 0 || bytes[1] !== 0) throw new FormatError("BAD_HEADER", path, "no idx magic (two zero bytes): not an idx file", 0);
  if (!type) throw new FormatError("UNSUPPORTED_DTYPE", path, `idx type byte 0x${bytes[2].toString(16)} is not one of 08 09 0B 0C 0D 0E`, 2);
  const rank = bytes[3];
  if (rank < 1) throw new FormatError("BAD_HEADER", path, "an idx file with 0 dimensions holds no rows", 3);
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) throw new FormatError("TRUNCATED", path, `the header of ${rank} dimensions needs ${headerBytes} bytes`, bytes.length);
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = shape[0];
  const dimensions = shape.slice(1).reduce((a, b) => a * b, 1);
  if (dimensions < 1 || dimensions > 65536) {
    throw new FormatError("BAD_HEADER", path, `rows of shape (${shape.slice(1).join(" x ")}) = ${dimensions} values: a vector has 1 to 65536`, 4);
  }
  const expected = headerBytes + count * dimensions * type.size;
  if (bytes.length < expected) {
    throw new FormatError("TRUNCATED", path, `shape (${shape.join(" x ")}) of ${type.name} needs ${expected} bytes, the file has ${bytes.length}: it is truncated`, bytes.length);
  }
  if (bytes.length > expected) {
    throw new FormatError("BAD_HEADER", path, `shape (${shape.join(" x ")}) of ${type.name} needs ${expected} bytes, the file has ${bytes.length}: the header is wrong`, 4);
  }
  const n = count * dimensions;
  const data = new Float32Array(n);
  const at = headerBytes;
  switch (bytes[2]) {
    case 0x08: for (let i = 0; i < n; i++) data[i] = bytes[at + i]; break;
    case 0x09: for (let i = 0; i < n; i++) data[i] = view.getInt8(at + i); break;
    case 0x0b: for (let i = 0; i < n; i++) data[i] = view.getInt16(at + 2 * i, false); break;
    case 0x0c: for (let i = 0; i < n; i++) data[i] = view.getInt32(at + 4 * i, false); break;
    case 0x0d: for (let i = 0; i < n; i++) data[i] = view.getFloat32(at + 4 * i, false); break;
    case 0x0e: for (let i = 0; i < n; i++) data[i] = view.getFloat64(at + 8 * i, false); break;
  }
  checkFinite(data, dimensions, 0, path);
  return { data, count, dimensions };
}

/**
 * Reads an idx file (gunzipping it first if its name ends in .gz or it starts with the gzip
 * magic) into memory as float32 (raw values, no normalisation: Fashion-MNIST pixels are
 * 0..255). O(bytes); the whole file is in memory (47 MB for Fashion-MNIST's training images).
 */
export function readIdx(path: string): Matrix {
  let bytes: Uint8Array = readFileSync(path);
  if (path.endsWith(".gz") || (bytes[0] === 0x1f && bytes[1] === 0x8b)) {
    try {
      bytes = gunzipSync(bytes);
    } catch (error) {
      throw new FormatError("TRUNCATED", path, `gunzip failed (${(error as Error).message}): the file is truncated or corrupt`);
    }
  }
  return parseIdx(bytes, path);
}

/** An idx file as a VectorSource (read whole on open, see readIdx). */
export function openIdx(path: string): Promise<VectorSource> {
  const m = readIdx(path);
  const d = m.dimensions;
  const bytes = m.data.length * 4;
  const rows = (start: number, n: number) => ({
    start,
    count: n,
    vectors: m.data.slice(start * d, (start + n) * d),
    bytesRead: Math.round((bytes * (start + n)) / Math.max(m.count, 1)),
  });
  return Promise.resolve({
    format: "idx",
    path,
    dimensions: d,
    count: m.count,
    bytes,
    async *batches(batchSize = DEFAULT_BATCH) {
      for (let start = 0; start < m.count; start += batchSize) yield rows(start, Math.min(batchSize, m.count - start));
    },
    row(index: number) {
      if (!Number.isInteger(index) || index < 0 || index >= m.count) throw new RangeError(`${path}: row ${index} is out of range (${m.count} rows)`);
      return Promise.resolve(rows(index, 1));
    },
    close() {},
    [Symbol.dispose]() {},
  });
}
