/**
 * Typed errors. Every native status code has exactly one class here, with the status from the
 * generated table (ffi.gen.ts); tests/errors.test.ts fails if a status has no class. The classes
 * are declared, not made by a factory, so each is a type as well as a value (`catch (e) { if (e
 * instanceof LockedError) ... }`, `let e: LockedError`).
 */
import { Status, statusMessages } from "./ffi.gen.ts";

/** A status name of the native table (e.g. "stale_guard"). */
export type StatusName = keyof typeof Status;

/** The base class: `code` is the stable, upper-case status name (e.g. "STALE_GUARD"). */
export class QuiverError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(status: number, detail?: string) {
    const name = statusName(status);
    super(detail ? `${statusMessages[status] ?? name}: ${detail}` : (statusMessages[status] ?? name));
    this.status = status;
    this.code = name.toUpperCase();
    this.name = new.target.name;
  }
}

function statusName(status: number): string {
  for (const [name, code] of Object.entries(Status)) if (code === status) return name;
  return `status_${status}`;
}

/** Status `invalid_argument`. */
export class InvalidArgumentError extends QuiverError {
  constructor(detail?: string) {
    super(Status.invalid_argument, detail);
  }
}

/** Status `dimension_mismatch`. */
export class DimensionMismatchError extends QuiverError {
  constructor(detail?: string) {
    super(Status.dimension_mismatch, detail);
  }
}

/** Status `invalid_vector`. */
export class InvalidVectorError extends QuiverError {
  constructor(detail?: string) {
    super(Status.invalid_vector, detail);
  }
}

/** Status `invalid_key`. */
export class InvalidKeyError extends QuiverError {
  constructor(detail?: string) {
    super(Status.invalid_key, detail);
  }
}

/** Status `invalid_k`. */
export class InvalidKError extends QuiverError {
  constructor(detail?: string) {
    super(Status.invalid_k, detail);
  }
}

/** Status `invalid_ef`. */
export class InvalidEfError extends QuiverError {
  constructor(detail?: string) {
    super(Status.invalid_ef, detail);
  }
}

/** Status `closed`. */
export class ClosedError extends QuiverError {
  constructor(detail?: string) {
    super(Status.closed, detail);
  }
}

/** Status `invalid_handle`. */
export class InvalidHandleError extends QuiverError {
  constructor(detail?: string) {
    super(Status.invalid_handle, detail);
  }
}

/** Status `not_found`. */
export class NotFoundError extends QuiverError {
  constructor(detail?: string) {
    super(Status.not_found, detail);
  }
}

/** Status `out_of_memory`. */
export class OutOfMemoryError extends QuiverError {
  constructor(detail?: string) {
    super(Status.out_of_memory, detail);
  }
}

/** Status `capacity_exceeded`. */
export class CapacityExceededError extends QuiverError {
  constructor(detail?: string) {
    super(Status.capacity_exceeded, detail);
  }
}

/** Status `io`. */
export class IoError extends QuiverError {
  constructor(detail?: string) {
    super(Status.io, detail);
  }
}

/** Status `corrupt_index`. */
export class CorruptIndexError extends QuiverError {
  constructor(detail?: string) {
    super(Status.corrupt_index, detail);
  }
}

/** Status `unsupported_version`. */
export class UnsupportedVersionError extends QuiverError {
  constructor(detail?: string) {
    super(Status.unsupported_version, detail);
  }
}

/** Status `locked`. */
export class LockedError extends QuiverError {
  constructor(detail?: string) {
    super(Status.locked, detail);
  }
}

/** Status `stale_guard`. */
export class StaleGuardError extends QuiverError {
  constructor(detail?: string) {
    super(Status.stale_guard, detail);
  }
}

/** Status `too_many_handles`. */
export class TooManyHandlesError extends QuiverError {
  constructor(detail?: string) {
    super(Status.too_many_handles, detail);
  }
}

/** Status `busy`. */
export class BusyError extends QuiverError {
  constructor(detail?: string) {
    super(Status.busy, detail);
  }
}

/** Status `read_only`. */
export class ReadOnlyError extends QuiverError {
  constructor(detail?: string) {
    super(Status.read_only, detail);
  }
}

/** Status `unknown_metric`. */
export class UnknownMetricError extends QuiverError {
  constructor(detail?: string) {
    super(Status.unknown_metric, detail);
  }
}

/** Status `invalid_dimensions`. */
export class InvalidDimensionsError extends QuiverError {
  constructor(detail?: string) {
    super(Status.invalid_dimensions, detail);
  }
}

/** Status `internal`. */
export class InternalError extends QuiverError {
  constructor(detail?: string) {
    super(Status.internal, detail);
  }
}

/** Status `disk_full`: the disk (or a file-size limit) refused to grow a file: ENOSPC, EDQUOT, EFBIG. */
export class DiskFullError extends QuiverError {
  constructor(detail?: string) {
    super(Status.disk_full, detail);
  }
}

/** Status `no_index`: no index exists at the path (open with create: false). */
export class NoIndexError extends QuiverError {
  constructor(detail?: string) {
    super(Status.no_index, detail);
  }
}

/** Status `already_exists`: a file in the way: the target of a backup, or one of its companions, exists. */
export class AlreadyExistsError extends QuiverError {
  constructor(detail?: string) {
    super(Status.already_exists, detail);
  }
}

/** Status `unverifiable`: full validation could not check what it claims to (the index was not closed cleanly). */
export class UnverifiableError extends QuiverError {
  constructor(detail?: string) {
    super(Status.unverifiable, detail);
  }
}

/**
 * Status `invalid_metadata`: metadata that is not JSON-like (a function, NaN, a bigint, a
 * cycle, a Date, ...), too large, or an indexed field of the wrong type. `path` says where
 * (e.g. `metadata.tags[2]`, `metadata[3].year` for the fourth record of a batch); nothing of
 * the call was written.
 */
export class InvalidMetadataError extends QuiverError {
  /** Where in the metadata the problem is (empty when unknown, e.g. from native code). */
  readonly path: string;
  constructor(detail?: string, path = "") {
    super(Status.invalid_metadata, path && detail ? `${path}: ${detail}` : detail);
    this.path = path;
  }
}

/**
 * Status `invalid_filter`: a filter with an unknown operator, a value of the wrong type, a
 * field not declared in `indexes`, or beyond the program limits. `path` says where (e.g.
 * `filter.$and[1].year.$gt`).
 */
export class InvalidFilterError extends QuiverError {
  /** Where in the filter the problem is (empty when unknown, e.g. from native code). */
  readonly path: string;
  constructor(detail?: string, path = "") {
    super(Status.invalid_filter, path && detail ? `${path}: ${detail}` : detail);
    this.path = path;
  }
}

/**
 * Status `id_conflict`: the key an add computed is held by a different id (a string id whose
 * hash another string id already holds, a numeric add over a string id, or the reverse).
 * Nothing was written.
 */
export class IdConflictError extends QuiverError {
  constructor(detail?: string) {
    super(Status.id_conflict, detail);
  }
}

/**
 * Status `buffer_too_small`: an output buffer was smaller than the answer. The TypeScript
 * wrapper grows its buffers and retries, so a caller sees it only from a bug.
 */
export class BufferTooSmallError extends QuiverError {
  constructor(detail?: string) {
    super(Status.buffer_too_small, detail);
  }
}

/** A class of this file: made from an optional detail. */
export type ErrorClass = new (detail?: string) => QuiverError;

const byStatus: ReadonlyMap<number, ErrorClass> = new Map<number, ErrorClass>([
  [Status.invalid_argument, InvalidArgumentError],
  [Status.dimension_mismatch, DimensionMismatchError],
  [Status.invalid_vector, InvalidVectorError],
  [Status.invalid_key, InvalidKeyError],
  [Status.invalid_k, InvalidKError],
  [Status.invalid_ef, InvalidEfError],
  [Status.closed, ClosedError],
  [Status.invalid_handle, InvalidHandleError],
  [Status.not_found, NotFoundError],
  [Status.out_of_memory, OutOfMemoryError],
  [Status.capacity_exceeded, CapacityExceededError],
  [Status.io, IoError],
  [Status.corrupt_index, CorruptIndexError],
  [Status.unsupported_version, UnsupportedVersionError],
  [Status.locked, LockedError],
  [Status.stale_guard, StaleGuardError],
  [Status.too_many_handles, TooManyHandlesError],
  [Status.busy, BusyError],
  [Status.read_only, ReadOnlyError],
  [Status.unknown_metric, UnknownMetricError],
  [Status.invalid_dimensions, InvalidDimensionsError],
  [Status.internal, InternalError],
  [Status.disk_full, DiskFullError],
  [Status.no_index, NoIndexError],
  [Status.already_exists, AlreadyExistsError],
  [Status.unverifiable, UnverifiableError],
  [Status.invalid_metadata, InvalidMetadataError],
  [Status.invalid_filter, InvalidFilterError],
  [Status.id_conflict, IdConflictError],
  [Status.buffer_too_small, BufferTooSmallError],
]);

/** The class for a status code (for tests of the table's completeness). */
export function errorClassFor(status: number): ErrorClass | undefined {
  return byStatus.get(status);
}

/** Throws the typed error for a non-ok status. */
export function check(status: number, detail?: string): void {
  if (status === Status.ok) return;
  const cls = byStatus.get(status);
  if (cls) throw new cls(detail);
  throw new QuiverError(status, detail);
}
