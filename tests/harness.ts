/**
 * One spec, two runtimes: specs import `test` and the assertions from here, and run unchanged
 * under `bun test` and `deno test`.
 */
// deno-lint-ignore no-explicit-any
const g = globalThis as any;
export const runtime: "bun" | "deno" = typeof g.Bun !== "undefined" ? "bun" : "deno";

type TestFn = () => void | Promise<void>;

let bunTest: ((name: string, fn: TestFn, timeout?: number) => void) | undefined;
if (runtime === "bun") bunTest = (await import("bun:test")).test;

/** Registers a test. `timeoutMs` bounds slow stress tests under Bun (Deno has no per-test timeout). */
export function test(name: string, fn: TestFn, timeoutMs = 60_000): void {
  if (bunTest) bunTest(name, fn, timeoutMs);
  else g.Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });
}

export class AssertionError extends Error {}

export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function assertEquals<T>(actual: T, expected: T, message = ""): void {
  const a = stringify(actual);
  const e = stringify(expected);
  if (a !== e) throw new AssertionError(`${message}\nexpected: ${e}\nactual:   ${a}`);
}

function stringify(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (typeof v === "bigint") return `${v}n`;
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<unknown>);
    return v;
  });
}

/** Asserts `fn` throws an instance of `cls` (and, if given, with this `code`); returns it. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => E,
  code?: string,
): E {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof cls)) {
      throw new AssertionError(`expected ${cls.name}, got ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
    }
    if (code !== undefined && (error as unknown as { code: string }).code !== code) {
      throw new AssertionError(`expected code ${code}, got ${(error as unknown as { code: string }).code}`);
    }
    return error;
  }
  throw new AssertionError(`expected ${cls.name} to be thrown, nothing was`);
}

/** A seeded PRNG (mulberry32) so failures replay: print the seed, pass it back via QUIVER_SEED. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function seedFromEnv(fallback: number): number {
  const raw = runtime === "bun" ? g.process.env.QUIVER_SEED : g.Deno.env.get("QUIVER_SEED");
  return raw ? Number(raw) : fallback;
}

export function envFlag(name: string): string | undefined {
  return runtime === "bun" ? g.process.env[name] : g.Deno.env.get(name);
}

/** Gaussian clusters: a stand-in for real embeddings that is hard enough to expose bad recall. */
export function clustered(n: number, d: number, seed: number, clusters = 32): Float32Array {
  const random = rng(seed);
  const gauss = () => {
    const u = 1 - random();
    const v = random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const centers = new Float32Array(clusters * d).map(() => gauss() * 4);
  const data = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(random() * clusters);
    for (let j = 0; j < d; j++) data[i * d + j] = centers[c * d + j] + gauss();
  }
  return data;
}

/** A fresh temporary directory. */
export function tempDir(): string {
  return runtime === "bun"
    ? g.require("node:fs").mkdtempSync(g.require("node:path").join(g.require("node:os").tmpdir(), "quiver-test-"))
    : g.Deno.makeTempDirSync({ prefix: "quiver-test-" });
}
