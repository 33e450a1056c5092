/**
 * The typed error of every reader and writer in src/formats/. Malformed input is an operating
 * error the caller handles (the CLI maps it to exit code 3), never a crash: each reader checks
 * every length against the file size before it reads, and every value before it returns it.
 */

/** What was wrong with the file; stable, for programs to branch on. */
export type FormatErrorCode =
  /** The file ends before what its header (or its record size) promises. */
  | "TRUNCATED"
  /** The magic, the header, the shape or a length field is malformed or contradicts the size. */
  | "BAD_HEADER"
  /** A dtype (element type) the reader does not take, or Fortran order. */
  | "UNSUPPORTED_DTYPE"
  /** One record is malformed: bad JSON, a missing or wrong field, a wrong length, a non-finite value. */
  | "BAD_RECORD"
  /** The file's extension or content names no format this library reads. */
  | "UNKNOWN_FORMAT";

/**
 * A malformed or unsupported vector file. `code` is stable (see FormatErrorCode); `path` names
 * the file and `position` the byte offset (binary formats) or 1-based line (JSON Lines) where it
 * went wrong, when known. The message says what was wrong and what to do.
 */
export class FormatError extends Error {
  readonly code: FormatErrorCode;
  readonly path: string;
  readonly position: number | undefined;
  constructor(code: FormatErrorCode, path: string, detail: string, position?: number) {
    super(`${path}: ${detail}`);
    this.name = "FormatError";
    this.code = code;
    this.path = path;
    this.position = position;
  }
}
