/**
 * Typed errors. Every native status code has exactly one class here, derived from the generated
 * table (ffi.gen.ts); tests/errors.test.ts fails if a status has no class.
 */
import { Status, statusMessages } from "./ffi.gen.ts";

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

type ErrorClass = new (detail?: string) => QuiverError;

function define(name: StatusName, className: string): ErrorClass {
  const status = Status[name];
  const cls = {
    [className]: class extends QuiverError {
      constructor(detail?: string) {
        super(status, detail);
      }
    },
  }[className];
  byStatus.set(status, cls);
  return cls;
}

const byStatus = new Map<number, ErrorClass>();

export const InvalidArgumentError = define("invalid_argument", "InvalidArgumentError");
export const DimensionMismatchError = define("dimension_mismatch", "DimensionMismatchError");
export const InvalidVectorError = define("invalid_vector", "InvalidVectorError");
export const InvalidKeyError = define("invalid_key", "InvalidKeyError");
export const InvalidKError = define("invalid_k", "InvalidKError");
export const InvalidEfError = define("invalid_ef", "InvalidEfError");
export const ClosedError = define("closed", "ClosedError");
export const InvalidHandleError = define("invalid_handle", "InvalidHandleError");
export const NotFoundError = define("not_found", "NotFoundError");
export const OutOfMemoryError = define("out_of_memory", "OutOfMemoryError");
export const CapacityExceededError = define("capacity_exceeded", "CapacityExceededError");
export const IoError = define("io", "IoError");
export const CorruptIndexError = define("corrupt_index", "CorruptIndexError");
export const UnsupportedVersionError = define("unsupported_version", "UnsupportedVersionError");
export const LockedError = define("locked", "LockedError");
export const StaleGuardError = define("stale_guard", "StaleGuardError");
export const TooManyHandlesError = define("too_many_handles", "TooManyHandlesError");
export const BusyError = define("busy", "BusyError");
export const ReadOnlyError = define("read_only", "ReadOnlyError");
export const UnknownMetricError = define("unknown_metric", "UnknownMetricError");
export const InvalidDimensionsError = define("invalid_dimensions", "InvalidDimensionsError");
export const InternalError = define("internal", "InternalError");
/** ENOSPC, EDQUOT or EFBIG: the call wrote nothing; acknowledged writes are kept. */
export const DiskFullError = define("disk_full", "DiskFullError");
/** `Index.open(path, { create: false })` (or a read-only open) found no index at `path`. */
export const NoIndexError = define("no_index", "NoIndexError");
/** A backup (or snapshot save) target, or one of its companion files, already exists. */
export const AlreadyExistsError = define("already_exists", "AlreadyExistsError");
/** `validate: "full"` on an index that was not closed cleanly: its checksums describe no file. */
export const UnverifiableError = define("unverifiable", "UnverifiableError");

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
