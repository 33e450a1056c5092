/** The shapes every reader in src/formats/ produces. */

/** One batch of consecutive rows of a vector file. */
export interface VectorBatch {
  /** Row number (0-based) of the first vector in the batch. */
  start: number;
  /** Rows in the batch. */
  count: number;
  /** `count * dimensions` float32 values, row-major; a fresh array the caller may keep. */
  vectors: Float32Array;
  /**
   * JSON Lines only: the id of each row as written (a bigint for integer ids, a string for
   * string ids); absent when the file has no ids (the row number is the key).
   */
  ids?: (bigint | string)[];
  /** JSON Lines only: each row's `metadata` value (undefined where absent). */
  metadata?: unknown[];
  /** Bytes of the file consumed so far (for progress on formats without a row count). */
  bytesRead: number;
}

/** A whole matrix in memory. */
export interface Matrix {
  /** `count * dimensions` float32 values, row-major. */
  data: Float32Array;
  count: number;
  dimensions: number;
}

/** An open vector file: its shape, then its rows in batches. */
export interface VectorSource {
  /** "npy", "fvecs", "bvecs", "ivecs", "jsonl", "hdf5" or "idx". */
  readonly format: string;
  readonly path: string;
  readonly dimensions: number;
  /** Rows in the file, or undefined where only a full read can tell (JSON Lines). */
  readonly count: number | undefined;
  /** Size of the file in bytes (for progress). */
  readonly bytes: number;
  /**
   * The rows in order, `batchSize` at a time (the last batch may be shorter). Reads the file
   * once, holding one batch in memory; throws FormatError where the file is malformed.
   */
  batches(batchSize?: number): AsyncGenerator<VectorBatch>;
  /** One row (0-based): random access for binary formats, a scan for JSON Lines. */
  row(index: number): Promise<VectorBatch>;
  /** Releases the file. Idempotent. */
  close(): void;
  [Symbol.dispose](): void;
}

/** Default rows per batch: large enough that one FFI crossing does a lot of work. */
export const DEFAULT_BATCH = 4096;
