/**
 * NumPy .npy files (format versions 1.0, 2.0 and 3.0): a magic, a Python-literal header
 * dictionary, then the array's bytes. The reader takes 1-D (one vector) and 2-D arrays of
 * little-endian float32, float16 or float64 in C order; anything else is a typed error that says
 * how to convert it. The writer writes float32 (vectors) or uint64 (keys), version 1.0.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { FormatError } from "./errors.ts";
import { BinaryFile, checkFinite, halfToFloat } from "./file.ts";
import { DEFAULT_BATCH, type Matrix, type VectorBatch, type VectorSource } from "./types.ts";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const ITEM_SIZES: Record<string, number> = { "<f2": 2, "<f4": 4, "<f8": 8 };

/** The parsed header of a .npy file. */
export interface NpyHeader {
  descr: string;
  shape: number[];
  /** Byte offset of the first element. */
  dataOffset: number;
}

/**
 * Parses the Python literal of a header: `{'descr': '<f4', 'fortran_order': False, 'shape': (n, d), }`
 * with the keys in any order. Strict: anything numpy would not write is BAD_HEADER.
 */
function parseHeaderDict(text: string, path: string): { descr: string; fortran: boolean; shape: number[] } {
  const bad = (why: string): never => {
    throw new FormatError("BAD_HEADER", path, `.npy header ${JSON.stringify(text.trim())}: ${why}; is this a .npy file?`, 10);
  };
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === " " || text[i] === "\t")) i++;
  };
  const expect = (c: string) => {
    ws();
    if (text[i] !== c) bad(`expected '${c}' at character ${i}`);
    i++;
  };
  const string = (): string => {
    ws();
    const quote = text[i];
    if (quote !== "'" && quote !== '"') bad(`expected a string at character ${i}`);
    const end = text.indexOf(quote, i + 1);
    if (end < 0) bad("unterminated string");
    const s = text.slice(i + 1, end);
    i = end + 1;
    return s;
  };
  const integer = (): number => {
    ws();
    const m = /^(0|[1-9][0-9]{0,15})L?/.exec(text.slice(i));
    if (!m) bad(`expected a dimension at character ${i}`);
    i += m![0].length;
    return Number(m![1]);
  };
  const out: { descr?: string; fortran?: boolean; shape?: number[] } = {};
  expect("{");
  for (;;) {
    ws();
    if (text[i] === "}") break;
    const key = string();
    expect(":");
    ws();
    if (key === "descr" && out.descr === undefined) out.descr = string();
    else if (key === "fortran_order" && out.fortran === undefined) {
      if (text.startsWith("False", i)) (out.fortran = false), (i += 5);
      else if (text.startsWith("True", i)) (out.fortran = true), (i += 4);
      else bad("fortran_order is neither True nor False");
    } else if (key === "shape" && out.shape === undefined) {
      expect("(");
      const shape: number[] = [];
      for (;;) {
        ws();
        if (text[i] === ")") break;
        shape.push(integer());
        ws();
        if (text[i] === ",") i++;
        else if (text[i] !== ")") bad(`expected ',' or ')' in the shape at character ${i}`);
      }
      i++;
      out.shape = shape;
    } else bad(`unexpected or repeated key '${key}'`);
    ws();
    if (text[i] === ",") i++;
    else if (text[i] !== "}") bad(`expected ',' or '}' at character ${i}`);
  }
  i++;
  if (text.slice(i).trim() !== "") bad("text after the dictionary");
  if (out.descr === undefined || out.fortran === undefined || out.shape === undefined) {
    bad("it needs the keys 'descr', 'fortran_order' and 'shape'");
  }
  return { descr: out.descr!, fortran: out.fortran!, shape: out.shape! };
}

/** Reads and validates the header of an open .npy file against its size. O(header). */
function readHeader(file: BinaryFile): NpyHeader & { rows: number; dimensions: number; itemSize: number } {
  const path = file.path;
  const lead = file.read(0, Math.min(file.size, 12), "the .npy magic");
  if (lead.length < 10 || MAGIC.some((b, j) => lead[j] !== b)) {
    throw new FormatError("BAD_HEADER", path, "no .npy magic (\\x93NUMPY): not a .npy file", 0);
  }
  const major = lead[6];
  if (major !== 1 && major !== 2 && major !== 3) {
    throw new FormatError("BAD_HEADER", path, `.npy format version ${major}.${lead[7]} is not 1, 2 or 3`, 6);
  }
  const view = new DataView(lead.buffer);
  if (major > 1 && lead.length < 12) throw new FormatError("TRUNCATED", path, "the .npy header length is cut off", lead.length);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (headerLength > 1 << 20) throw new FormatError("BAD_HEADER", path, `header length ${headerLength} is implausible`, 8);
  const raw = file.read(start, headerLength, "the .npy header");
  const text = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(raw);
  if (!text.endsWith("\n")) throw new FormatError("BAD_HEADER", path, "the .npy header does not end with a newline", start);
  const { descr, fortran, shape } = parseHeaderDict(text, path);
  const itemSize = ITEM_SIZES[descr === "=f4" ? "<f4" : descr === "=f2" ? "<f2" : descr === "=f8" ? "<f8" : descr];
  if (itemSize === undefined) {
    throw new FormatError(
      "UNSUPPORTED_DTYPE",
      path,
      `dtype '${descr}' is not supported: vectors must be little-endian float32, float16 or float64 ` +
        `(convert with np.save(path, arr.astype('<f4')))`,
    );
  }
  if (fortran) {
    throw new FormatError("UNSUPPORTED_DTYPE", path, "the array is in Fortran order: save it in C order (np.save(path, np.ascontiguousarray(arr)))");
  }
  if (shape.length !== 1 && shape.length !== 2) {
    throw new FormatError("BAD_HEADER", path, `shape (${shape.join(", ")}) is not (rows, dimensions) or (dimensions,)`);
  }
  const [rows, dimensions] = shape.length === 2 ? shape : [1, shape[0]];
  if (dimensions < 1 || dimensions > 65536) throw new FormatError("BAD_HEADER", path, `${dimensions} dimensions: a vector has 1 to 65536`);
  const dataOffset = start + headerLength;
  const expected = dataOffset + rows * dimensions * itemSize;
  if (file.size < expected) {
    throw new FormatError("TRUNCATED", path, `shape (${shape.join(", ")}) needs ${expected} bytes but the file has ${file.size}: it is truncated`, file.size);
  }
  if (file.size > expected) {
    throw new FormatError("BAD_HEADER", path, `shape (${shape.join(", ")}) needs ${expected} bytes but the file has ${file.size}: the header is wrong`, dataOffset);
  }
  return { descr, shape, dataOffset, rows, dimensions, itemSize };
}

function decode(bytes: Uint8Array, itemSize: number): Float32Array {
  const n = bytes.length / itemSize;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (itemSize === 4) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  const out = new Float32Array(n);
  if (itemSize === 2) for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
  else for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
  return out;
}

/**
 * Opens a .npy file: reads and validates the header (magic, version, dtype, order, shape
 * against the file size). Rows are then read a batch at a time. Cost: O(1) to open; O(rows * d)
 * to read, one batch in memory. float64 values beyond float32's range become infinities and are
 * rejected like NaN (FormatError BAD_RECORD).
 */
export function openNpy(path: string): Promise<VectorSource> {
  const file = new BinaryFile(path);
  try {
    const h = readHeader(file);
    const rowBytes = h.dimensions * h.itemSize;
    const rows = (start: number, count: number): VectorBatch => {
      const bytes = file.read(h.dataOffset + start * rowBytes, count * rowBytes, `rows ${start}..${start + count}`);
      const vectors = decode(bytes, h.itemSize);
      checkFinite(vectors, h.dimensions, start, path);
      return { start, count, vectors, bytesRead: h.dataOffset + (start + count) * rowBytes };
    };
    const source: VectorSource = {
      format: "npy",
      path,
      dimensions: h.dimensions,
      count: h.rows,
      bytes: file.size,
      async *batches(batchSize = DEFAULT_BATCH) {
        for (let start = 0; start < h.rows; start += batchSize) yield rows(start, Math.min(batchSize, h.rows - start));
      },
      row(index: number) {
        if (!Number.isInteger(index) || index < 0 || index >= h.rows) {
          throw new RangeError(`${path}: row ${index} is out of range (the file has ${h.rows} rows)`);
        }
        return Promise.resolve(rows(index, 1));
      },
      close: () => file.close(),
      [Symbol.dispose]: () => file.close(),
    };
    return Promise.resolve(source);
  } catch (error) {
    file.close();
    throw error;
  }
}

/** Reads a whole .npy file into memory (see openNpy). O(rows * d). */
export function readNpy(path: string): Matrix {
  const file = new BinaryFile(path);
  try {
    const h = readHeader(file);
    const data = decode(file.read(h.dataOffset, h.rows * h.dimensions * h.itemSize, "the array"), h.itemSize).slice();
    checkFinite(data, h.dimensions, 0, path);
    return { data, count: h.rows, dimensions: h.dimensions };
  } finally {
    file.close();
  }
}

// The header is padded to a fixed 128 bytes so the row count can be rewritten in place when a
// streamed write ends (numpy pads to a multiple of 64; two 20-digit numbers always fit).
const HEADER_BYTES = 128;

function headerBytes(descr: string, shape: number[]): Uint8Array {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  const body = dict.padEnd(HEADER_BYTES - 10 - 1, " ") + "\n";
  const out = new Uint8Array(HEADER_BYTES);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, body.length, true);
  out.set(new TextEncoder().encode(body), 10);
  return out;
}

/**
 * A streamed .npy writer: rows are appended, and the header's row count is written on `close`.
 * Writes to `path~tmp` and renames it over `path` on close (fsynced), so a reader never sees a
 * partial file; `abort()` removes the temporary. Not thread-safe. Cost: O(bytes written).
 */
export class NpyWriter {
  readonly path: string;
  readonly dimensions: number;
  readonly dtype: "f4" | "u8";
  #fd: number | undefined;
  #rows = 0;
  #tmp: string;

  /** `dtype` "f4" writes float32 rows of `dimensions`; "u8" writes uint64 (`dimensions` 1: a column of keys). */
  constructor(path: string, dimensions: number, dtype: "f4" | "u8" = "f4") {
    if (!Number.isInteger(dimensions) || dimensions < 1) throw new RangeError(`dimensions ${dimensions} must be a positive integer`);
    this.path = path;
    this.dimensions = dimensions;
    this.dtype = dtype;
    this.#tmp = `${path}~tmp`;
    this.#fd = openSync(this.#tmp, "w");
    writeSync(this.#fd, headerBytes(`<${dtype}`, this.#shape()));
  }

  #shape(): number[] {
    return this.dtype === "u8" && this.dimensions === 1 ? [this.#rows] : [this.#rows, this.dimensions];
  }

  /** Appends rows: a multiple of `dimensions` values. O(values). */
  write(values: Float32Array | BigUint64Array): void {
    if (this.#fd === undefined) throw new Error(`${this.path}: write after close`);
    if (values.length % this.dimensions !== 0) throw new RangeError(`${values.length} values are not whole rows of ${this.dimensions}`);
    if ((this.dtype === "f4") !== values instanceof Float32Array) throw new TypeError(`a <${this.dtype} writer takes ${this.dtype === "f4" ? "Float32Array" : "BigUint64Array"}`);
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    for (let done = 0; done < bytes.length;) done += writeSync(this.#fd, bytes, done, bytes.length - done);
    this.#rows += values.length / this.dimensions;
  }

  /** Writes the final header, fsyncs and renames the file into place. Idempotent. */
  close(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    writeSync(fd, headerBytes(`<${this.dtype}`, this.#shape()), 0, HEADER_BYTES, 0);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(this.#tmp, this.path);
  }

  /** Drops what was written (the temporary file). Idempotent. */
  abort(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    rmSync(this.#tmp, { force: true });
  }
}

/** Writes a whole matrix as a float32 .npy file (atomically, see NpyWriter). O(bytes). */
export function writeNpy(path: string, matrix: Matrix): void {
  if (matrix.data.length !== matrix.count * matrix.dimensions) {
    throw new RangeError(`${matrix.data.length} values are not ${matrix.count} rows of ${matrix.dimensions}`);
  }
  const writer = new NpyWriter(path, matrix.dimensions);
  try {
    writer.write(matrix.data);
    writer.close();
  } catch (error) {
    writer.abort();
    throw error;
  }
}
