/** What every command shares: exit codes, usage errors, number parsing, output. */
import process from "node:process";
import {
  CorruptIndexError,
  DimensionMismatchError,
  InvalidArgumentError,
  InvalidDimensionsError,
  InvalidEfError,
  InvalidKError,
  InvalidKeyError,
  InvalidVectorError,
  NotFoundError,
  UnknownMetricError,
  UnsupportedVersionError,
} from "../mod.ts";
import { FormatError } from "../formats.ts";

/** The exit codes (stable; documented in docs/cli.md and in every --help). */
export const EXIT = {
  ok: 0,
  /** Anything else: I/O errors, a locked index, a bug. */
  failure: 1,
  /** Unknown command or option, a missing or malformed argument. */
  usage: 2,
  /** The input is wrong: a malformed vector file, wrong dimensions, an unknown key or id. */
  input: 3,
  /** The index is corrupt (its files fail validation, or verify finds damage). */
  corrupt: 4,
} as const;

/** A bad command line: exit code 2. */
export class UsageError extends Error {
  readonly code = "USAGE";
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Bad input that is not a file format problem (e.g. an unknown key): exit code 3. */
export class InputError extends Error {
  readonly code = "BAD_INPUT";
  constructor(message: string) {
    super(message);
    this.name = "InputError";
  }
}

/** The index failed verification: exit code 4. */
export class CorruptError extends Error {
  readonly code = "CORRUPT_INDEX";
  constructor(message: string) {
    super(message);
    this.name = "CorruptError";
  }
}

/** The exit code an error means. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError || error instanceof InvalidKError || error instanceof InvalidEfError || error instanceof UnknownMetricError) return EXIT.usage;
  if (error instanceof InvalidArgumentError) return EXIT.usage;
  if (error instanceof CorruptIndexError || error instanceof UnsupportedVersionError || error instanceof CorruptError) return EXIT.corrupt;
  if (
    error instanceof FormatError || error instanceof InputError || error instanceof DimensionMismatchError ||
    error instanceof InvalidVectorError || error instanceof InvalidKeyError || error instanceof NotFoundError ||
    error instanceof InvalidDimensionsError || error instanceof RangeError
  ) return EXIT.input;
  return EXIT.failure;
}

/** An integer option, or `fallback` when absent; UsageError names the flag otherwise. */
export function intFlag(value: unknown, flag: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || !/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag} ${String(value)}: expected an integer from ${min} to ${max}`);
  }
  return n;
}

/** A JSON option; UsageError names the flag when it does not parse. */
export function jsonFlag(value: string, flag: string): unknown {
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new UsageError(`--${flag} is not JSON (${(error as Error).message}): ${value}`);
  }
}

/** JSON.stringify with bigints as decimal strings (u64 keys do not fit a JSON number). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

/** Writes the command's result: one JSON document with --json, else the text. */
export function output(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? `${toJson({ ok: true, ...(value as object) })}\n` : `${text()}\n`);
}

/** Every core, for native threads. */
export function defaultThreads(): number {
  return Math.max(1, Math.min(256, navigator.hardwareConcurrency || 1));
}

/** A plain text table with right-aligned numbers. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r, j) => r.map((c, i) => (typeof rows[j - 1]?.[i] === "number" ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd()).join("\n");
}
