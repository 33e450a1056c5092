/**
 * One spec, two runtimes: specs import `test` and the assertions from here, and run unchanged
 * under `bun test` and `deno test`.
 */
import { Board, boardBytes, State, W, type WorkerReply } from "./fixtures/worker_lib.ts";
export { rng } from "./fixtures/random.ts";
import { rng } from "./fixtures/random.ts";

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

// Bun has no global `require` in an ES module: import what tempDir needs (Deno has these too).
const nodeFs = runtime === "bun" ? await import("node:fs") : undefined!;
const nodePath = runtime === "bun" ? await import("node:path") : undefined!;
const nodeOs = runtime === "bun" ? await import("node:os") : undefined!;

/** A fresh temporary directory. */
export function tempDir(): string {
  return runtime === "bun"
    ? nodeFs.mkdtempSync(nodePath.join(nodeOs.tmpdir(), "quiver-test-"))
    : g.Deno.makeTempDirSync({ prefix: "quiver-test-" });
}

// deno-lint-ignore no-explicit-any
const bunFfi: any = runtime === "bun" ? await import("bun:ffi") : undefined;

/** The native address of a typed array's first byte (to prove that two views share memory). */
export function addressOf(view: ArrayBufferView): bigint {
  if (bunFfi) return BigInt(bunFfi.ptr(view));
  return BigInt(g.Deno.UnsafePointer.value(g.Deno.UnsafePointer.of(view)));
}

/** Reads the raw bits of a Float32Array (so -0 / NaN payloads compare exactly). */
export function bitsOf(array: Float32Array): Uint32Array {
  return new Uint32Array(array.buffer, array.byteOffset, array.length).slice();
}

/** A child process running a script under this same runtime (see `spawnRuntime`). */
export interface ChildProcess {
  readonly pid: number;
  /** The next whole line of the child's stdout, or null at end of stream. */
  nextLine(): Promise<string | null>;
  /** Sends a signal; a no-op once the child has exited. */
  kill(signal?: "SIGKILL" | "SIGTERM"): void;
  /** Resolves when the child has exited: its exit code, or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Everything the child wrote to stderr (resolves after exit). */
  readonly stderr: Promise<string>;
}

const childPids = new Set<number>();

/**
 * Runs `script` (a path) with `args` in a new process of the runtime running this test: Bun's
 * `process.execPath`, or `Deno.execPath() run -A --no-check`. Stdout is read line by line;
 * stderr is collected. `env` adds to the inherited environment. `exposeGc` gives Deno's child a
 * global `gc()` (Bun's has `Bun.gc`).
 */
export function spawnRuntime(
  script: string,
  args: string[],
  env: Record<string, string> = {},
  options: { exposeGc?: boolean } = {},
): ChildProcess {
  let stdout: ReadableStream<Uint8Array>;
  let stderrStream: ReadableStream<Uint8Array>;
  let pid: number;
  let killer: (signal: "SIGKILL" | "SIGTERM") => void;
  let exited: Promise<{ code: number | null; signal: string | null }>;
  if (runtime === "bun") {
    const proc = g.Bun.spawn([g.process.execPath, script, ...args], {
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
      env: { ...g.process.env, ...env },
    });
    stdout = proc.stdout;
    stderrStream = proc.stderr;
    pid = proc.pid;
    killer = (signal) => proc.kill(signal);
    exited = proc.exited.then(() => ({ code: proc.signalCode ? null : proc.exitCode, signal: proc.signalCode ?? null }));
  } else {
    const command = new g.Deno.Command(g.Deno.execPath(), {
      // Bun always has Bun.gc; Deno's gc() needs V8's flag.
      args: ["run", "-A", "--no-check", ...(options.exposeGc ? ["--v8-flags=--expose-gc"] : []), script, ...args],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
      env,
    });
    const proc = command.spawn();
    stdout = proc.stdout;
    stderrStream = proc.stderr;
    pid = proc.pid;
    killer = (signal) => proc.kill(signal);
    exited = proc.status.then((s: { code: number; signal: string | null }) => ({
      code: s.signal ? null : s.code,
      signal: s.signal ?? null,
    }));
  }
  childPids.add(pid);
  let done = false;
  exited = exited.then((status) => {
    done = true;
    childPids.delete(pid);
    return status;
  });
  const reader = stdout.getReader();
  const decoder = new TextDecoder();
  let partial = "";
  let lines: string[] = [];
  let next = 0;
  let ended = false;
  const stderr = new Response(stderrStream).text();
  return {
    pid,
    async nextLine(): Promise<string | null> {
      for (;;) {
        if (next < lines.length) return lines[next++];
        // A partial last line (the child died mid-write) is not a line.
        if (ended) return null;
        const { value, done: end } = await reader.read();
        if (end) {
          ended = true;
          continue;
        }
        const parts = (partial + decoder.decode(value, { stream: true })).split("\n");
        partial = parts.pop()!;
        lines = parts;
        next = 0;
      }
    },
    kill(signal = "SIGKILL") {
      if (done) return;
      try {
        killer(signal);
      } catch {
        // It exited between the check and the signal.
      }
    },
    exited,
    stderr,
  };
}

/** Kills every child still running (for `finally` blocks of specs that spawn). */
export function killChildren(): void {
  for (const pid of childPids) {
    try {
      if (runtime === "bun") g.process.kill(pid, "SIGKILL");
      else g.Deno.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

// ---- Concurrency specs: a crew of Workers on one index, watched by a watchdog --------------
// Used by tests/workers.test.ts and tests/resize.test.ts; the board layout and the Worker side
// live in tests/fixtures/worker_lib.ts.

export interface CrewMember {
  /** Shown by the watchdog and in failures, e.g. "searcher 1". */
  name: string;
  /** A Worker script in tests/fixtures/ (it calls `serve`). */
  script: URL;
  role: string;
  params?: unknown;
}

export interface CrewOptions {
  /** The `handle` of the index every Worker attaches to. */
  handle: number;
  members: CrewMember[];
  /** Names of main-thread participants (they report on the board like Workers). */
  main?: string[];
  shared?: Record<string, SharedArrayBuffer>;
  /** The watchdog fails the run when a running participant makes no progress this long. */
  stallMs?: number;
}

type Signal = { promise: Promise<unknown>; resolve: (value: unknown) => void };

/**
 * A crew of Workers on one index plus a watchdog Worker. Every failure (a Worker's error, a
 * Worker crash, a stall) rejects `failure`; `until(p)` races a promise against it, so a test
 * fails with the Worker's name, error class, code and stack instead of hanging.
 */
export class Crew {
  readonly words: Int32Array;
  readonly names: string[];
  readonly failure: Promise<never>;
  readonly #workers: Worker[] = [];
  readonly #results = new Map<string, Promise<unknown>>();
  readonly #signals = new Map<string, Signal>();
  readonly #arrived: Promise<void>[] = [];
  #watchdog: Worker | undefined;
  #fail!: (error: Error) => void;
  #disposed = false;

  private constructor(readonly options: CrewOptions, readonly sab: SharedArrayBuffer) {
    this.words = new Int32Array(sab);
    this.names = [...options.members.map((m) => m.name), ...(options.main ?? [])];
    this.failure = new Promise<never>((_, reject) => (this.#fail = reject));
    this.failure.catch(() => {});
  }

  static async start(options: CrewOptions): Promise<Crew> {
    const participants = options.members.length + (options.main?.length ?? 0);
    const crew = new Crew(options, new SharedArrayBuffer(boardBytes(participants)));
    await crew.#startWatchdog(options.stallMs ?? (envFlag("QUIVER_SOAK") ? 60_000 : 15_000));
    const ready = options.members.map((member, slot) => crew.#spawn(member, slot));
    await crew.until(Promise.all(ready));
    return crew;
  }

  async #startWatchdog(stallMs: number): Promise<void> {
    const watchdog = new Worker(new URL("./fixtures/worker_watchdog.ts", import.meta.url), { type: "module" });
    this.#watchdog = watchdog;
    const ready = new Promise<void>((resolve) => {
      watchdog.onmessage = (event: MessageEvent) => {
        if (event.data?.type === "ready") return resolve();
        if (event.data?.type === "stall") {
          Atomics.store(this.words, W.stallAck, 1);
          Atomics.notify(this.words, W.stallAck);
          this.#fail(new AssertionError(event.data.text));
        }
      };
    });
    watchdog.onerror = (event: ErrorEvent) => this.#fail(new AssertionError(`watchdog crashed: ${event.message}`));
    await ready;
    watchdog.postMessage({ board: this.sab, names: this.names, stallMs, pollMs: 250, ackMs: 5000 });
  }

  #spawn(member: CrewMember, slot: number): Promise<void> {
    const worker = new Worker(member.script, { type: "module" });
    this.#workers.push(worker);
    const base = Board.slotBase(slot);
    Atomics.store(this.words, base + 3, State.running);
    let resolveResult!: (v: unknown) => void;
    this.#results.set(member.name, new Promise((resolve) => (resolveResult = resolve)));
    let resolveArrived!: () => void;
    this.#arrived.push(new Promise<void>((resolve) => (resolveArrived = resolve)));
    return new Promise<void>((resolveReady) => {
      worker.onmessage = (event: MessageEvent) => {
        const reply = event.data as WorkerReply | { type: "arrived" } | { type: "signal"; what: string; data: unknown };
        switch (reply.type) {
          case "ready":
            worker.postMessage({
              handle: this.options.handle,
              board: this.sab,
              slot,
              role: member.role,
              params: member.params ?? {},
              shared: this.options.shared ?? {},
            });
            resolveReady();
            break;
          case "arrived":
            resolveArrived();
            break;
          case "signal":
            this.#signal(member.name, reply.what).resolve(reply.data);
            break;
          case "done":
            resolveResult(reply.result);
            break;
          case "error":
            this.#fail(new AssertionError(
              `${member.name} (${member.role}) failed: ${reply.name}${reply.code ? ` [${reply.code}]` : ""}: ${reply.message}\n${reply.stack ?? ""}`,
            ));
            break;
        }
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault?.();
        this.#fail(new AssertionError(`${member.name} (${member.role}) crashed: ${event.message}`));
      };
    });
  }

  #signal(name: string, what: string): Signal {
    const id = `${name}\u0000${what}`;
    let signal = this.#signals.get(id);
    if (!signal) {
      let resolve!: (value: unknown) => void;
      const promise = new Promise<unknown>((r) => (resolve = r));
      signal = { promise, resolve };
      this.#signals.set(id, signal);
    }
    return signal;
  }

  /** Races `promise` against every failure of the crew. */
  until<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.failure]);
  }

  /** The board slot of a main-thread participant. */
  mainBoard(name: string): Board {
    const slot = this.names.indexOf(name);
    if (slot < this.options.members.length) throw new Error(`${name} is not a main-thread participant`);
    return new Board(this.sab, slot);
  }

  /** Resolves once every Worker waits on the start barrier. */
  arrived(): Promise<void> {
    return this.until(Promise.all(this.#arrived).then(() => {}));
  }

  /** Sets a board word and wakes its waiters (e.g. W.go opens the start barrier). */
  set(word: number, value = 1): void {
    Atomics.store(this.words, word, value);
    Atomics.notify(this.words, word);
  }

  /** Asks every loop to finish. */
  stop(): void {
    this.set(W.stop, 1);
  }

  /** Resolves with what `name` sent with `signal(what, data)` (first time only). */
  signal(name: string, what: string): Promise<unknown> {
    return this.until(this.#signal(name, what).promise);
  }

  /** The result `name` returned. */
  result<T = unknown>(name: string): Promise<T> {
    const promise = this.#results.get(name);
    if (!promise) throw new Error(`no crew member named ${name}`);
    return this.until(promise) as Promise<T>;
  }

  /** The results of every Worker, by name. */
  async results<T = unknown>(): Promise<Record<string, T>> {
    const out: Record<string, T> = {};
    for (const member of this.options.members) out[member.name] = await this.result<T>(member.name);
    return out;
  }

  /** Stops the watchdog and terminates every Worker. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.set(W.stop, 1);
    this.set(W.go, 1);
    this.set(W.watchdogStop, 1);
    for (const worker of this.#workers) worker.terminate();
    this.#watchdog?.terminate();
  }
}

/** Lets the event loop run (Worker messages, the crew's failure) between main-thread work. */
export function turn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

interface HealthIndex {
  stats(): {
    invariant_violations: bigint | number;
    corruption_detected: bigint | number;
    lock_order_violations: bigint | number;
  };
  verify(): { ok: boolean };
}

/** The post-condition of every concurrency spec: safety counters at 0 and a clean integrity walk. */
export function assertHealthy(index: HealthIndex, what = "index"): void {
  const stats = index.stats();
  assertEquals(Number(stats.invariant_violations), 0, `${what}: invariant_violations`);
  assertEquals(Number(stats.corruption_detected), 0, `${what}: corruption_detected`);
  assertEquals(Number(stats.lock_order_violations), 0, `${what}: lock_order_violations`);
  const report = index.verify();
  assert(report.ok, `${what}: verify() failed: ${stringify(report)}`);
}

/** Seconds since `start` (performance.now()), for the timings the specs print. */
export function elapsed(start: number): string {
  return `${((performance.now() - start) / 1000).toFixed(2)} s`;
}

/** The result of `runSync`. */
export interface RunResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

/**
 * Runs a command to completion. `env` adds to the inherited environment, or with `clearEnv`
 * is the whole environment of the child.
 */
export function runSync(
  command: string[],
  options: { cwd?: string; env?: Record<string, string>; clearEnv?: boolean } = {},
): RunResult {
  const env = options.env ?? {};
  if (runtime === "bun") {
    const proc = g.Bun.spawnSync(command, {
      cwd: options.cwd,
      env: options.clearEnv ? env : { ...g.process.env, ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: proc.exitCode ?? -1, stdout: new Uint8Array(proc.stdout), stderr: new TextDecoder().decode(proc.stderr) };
  }
  const out = new g.Deno.Command(command[0], {
    args: command.slice(1),
    cwd: options.cwd,
    env,
    clearEnv: options.clearEnv ?? false,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

/** An absolute path inside the repository (tests/ is one level below its root). */
export function repoPath(relative: string): string {
  return decodeURIComponent(new URL(`../${relative}`, import.meta.url).pathname);
}
