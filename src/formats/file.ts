/** Positional reads with bounds checks: the only file access of the binary readers. */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { FormatError } from "./errors.ts";

/** A file opened for positional reads; every read checks the file size first. */
export class BinaryFile {
  readonly path: string;
  readonly size: number;
  #fd: number | undefined;

  constructor(path: string) {
    this.path = path;
    this.#fd = openSync(path, "r");
    this.size = fstatSync(this.#fd).size;
  }

  /**
   * `length` bytes at `position` (a fresh array), or FormatError TRUNCATED if the file ends
   * first. O(length).
   */
  read(position: number, length: number, what: string): Uint8Array {
    if (this.#fd === undefined) throw new Error(`${this.path}: read after close`);
    if (position + length > this.size) {
      throw new FormatError(
        "TRUNCATED",
        this.path,
        `${what} needs bytes ${position}..${position + length} but the file has ${this.size}: it is truncated (copy it again)`,
        this.size,
      );
    }
    const out = new Uint8Array(length);
    for (let done = 0; done < length;) {
      const n = readSync(this.#fd, out, done, Math.min(1 << 26, length - done), position + done);
      if (n <= 0) throw new FormatError("TRUNCATED", this.path, `${what}: short read at byte ${position + done}`, position + done);
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** Throws FormatError BAD_RECORD at the first NaN or infinity (the index cannot hold them). */
export function checkFinite(values: Float32Array, dimensions: number, firstRow: number, path: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      const row = firstRow + Math.floor(i / dimensions);
      throw new FormatError("BAD_RECORD", path, `row ${row}, component ${i % dimensions} is ${values[i]}: vectors must be finite`);
    }
  }
}

const halfTable = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0) table[h] = sign * fraction * 2 ** -24;
    else if (exponent === 31) table[h] = fraction ? NaN : sign * Infinity;
    else table[h] = sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return table;
})();

/** IEEE 754 half (binary16) to float32, exact: one table lookup. */
export function halfToFloat(bits: number): number {
  return halfTable[bits & 0xffff];
}
