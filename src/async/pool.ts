/**
 * The pool behind the async API: a fixed number of Workers (default: the core count, settable
 * with `configureAsync`), started on first use, each attached to the indexes it is given work
 * for. Tasks wait in one FIFO queue and go to the first idle Worker; nothing else is ever
 * started, so a burst of Promises costs queue entries, not threads. Imports ./protocol.ts and
 * ../errors.ts.
 */
import { errorClassFor, InvalidArgumentError, QuiverError } from "../errors.ts";
import { Status } from "../ffi.gen.ts";
import type { Reply, Request, TaskBody } from "./protocol.ts";

/** What a task's owner hears: progress while it runs, then one settle. */
export interface TaskHooks {
  progress?(done: number, total: number): void;
  settle(reply: Extract<Reply, { type: "done" | "failed" }>): void;
}

interface Task {
  id: number;
  handle: number;
  body: TaskBody;
  cancel?: Int32Array;
  progress?: BigUint64Array;
  transfer: ArrayBuffer[];
  hooks: TaskHooks;
  /** Posted by itself, never coalesced: a coalesced message with it could not be posted. */
  alone?: boolean;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  /** The task it runs; for coalesced searches the first, with the others in `more`. */
  task: Task | undefined;
  more: Task[];
  handles: Set<number>;
  /** Deno: retires the Worker after this long idle (see idleRetireMs). */
  idle: ReturnType<typeof setTimeout> | undefined;
  /**
   * The Worker's one message handler stays for its whole life; what waits on its replies
   * waits here. Round trips (drain) in the order they were posted: a Worker answers in order.
   */
  roundTrips: Array<() => void>;
  /** Retired: it takes no task; it is told to shut down once ready, and ends when it has. */
  retiring: boolean;
  /** Resolves once the retired Worker has released its references and been terminated. */
  gone: (() => void) | undefined;
  /** Bun: whether the Worker is ref'd now (see #hold). */
  held: boolean;
}

/**
 * Bun's Workers can be unref'd, so an idle pool never holds the process open. Deno's cannot:
 * a live Worker keeps the process running, so there an idle Worker gives its references back
 * and exits after `idleMs` (default 1 s; settable). Starting a Deno Worker stalls the event
 * loop for ~20-35 ms (measured: BENCHMARKS.md), so a server should set `idleMs: Infinity` and
 * start the pool before it serves (`asyncStart`).
 */
const idleRetireMsDefault = 1000;

/** The longest delay a timer takes (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
const timerMaxMs = 2 ** 31 - 1;

/**
 * Searches waiting together for the same index go to a Worker in one message (one round trip,
 * whose cost is most of a small search's): at most this many.
 */
const coalesceMax = 32;

/** `asyncStats()`: the pool's size and its queue. */
export interface AsyncStats {
  /** The Workers the pool may run (the bound). */
  workers: number;
  /** The nice value new Workers (and their native threads) run at (Linux). */
  nice: number;
  /** Deno: how long an idle Worker lives before it exits (Bun's never hold the process). */
  idleMs: number;
  /** Workers in the pool now (at most `workers`, less those still retiring). */
  started: number;
  /** Workers told to shut down (a shrink, Deno's idle exit) that have not yet: they count
   * toward the bound until they have. */
  retiring: number;
  /** Tasks running on a Worker now. */
  running: number;
  /** Tasks waiting for a Worker (the queue depth). */
  queued: number;
  /** Tasks settled since the pool started, and how many of them failed or were aborted. */
  completed: number;
  failed: number;
  aborted: number;
  /** Searches that went to a Worker in one message with others (see coalesceMax). */
  coalesced: number;
}

/** The Worker script beside this file: worker.ts from the sources, worker.js in the npm package. */
const workerUrl = new URL(import.meta.url.endsWith(".ts") ? "./worker.ts" : "./worker.js", import.meta.url);

function defaultWorkers(): number {
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return typeof n === "number" && n >= 1 ? Math.min(n, 64) : 2;
}

/** Rebuilds a Worker's error on this thread: the same class (and `code`) and message. */
export function rebuild(reply: Extract<Reply, { type: "failed" }>): Error {
  const cls = reply.status === undefined ? undefined : errorClassFor(reply.status);
  const error: Error = cls ? new cls() : reply.status !== undefined ? new QuiverError(reply.status) : new Error();
  error.message = reply.message;
  if (!(error instanceof QuiverError)) error.name = reply.name;
  // InvalidFilterError and InvalidMetadataError say where: keep it.
  if (reply.path !== undefined) Object.defineProperty(error, "path", { value: reply.path });
  return error;
}

export class Pool {
  #size = defaultWorkers();
  #nice = 0;
  #slots: Slot[] = [];
  #queue: Task[] = [];
  #next = 1;
  #completed = 0;
  #retireWhenIdle = false;
  #idleMs = idleRetireMsDefault;
  #started: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  #retiring = new Set<Promise<void>>();
  #retiringSlots = new Set<Slot>();
  #failed = 0;
  #aborted = 0;
  #coalesced = 0;

  /**
   * Sets the bound (shrinking retires idle Workers now, busy ones when their task ends) and the
   * nice value of Workers started from now on.
   */
  configure(workers: number, nice = this.#nice, idleMs = this.#idleMs): void {
    // Every value is checked before any is set: a refused call changes nothing.
    if (!Number.isInteger(nice) || nice < 0 || nice > 19) throw new InvalidArgumentError(`nice = ${String(nice)} (0 to 19)`);
    if (typeof idleMs !== "number" || !(idleMs >= 0)) throw new InvalidArgumentError(`idleMs = ${String(idleMs)} (>= 0, or Infinity)`);
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
      throw new InvalidArgumentError(`workers = ${String(workers)} (1 to 64)`);
    }
    this.#nice = nice;
    this.#idleMs = idleMs;
    this.#size = workers;
    for (const slot of [...this.#slots]) if (this.#slots.length > this.#size && slot.task === undefined) this.#retire(slot);
    // Idle Workers count the new idleMs from now (Infinity: the exits already planned are off).
    for (const slot of this.#slots) if (slot.ready && slot.task === undefined) this.#idleLater(slot);
    this.#pump();
  }

  /** Starts every Worker up to the bound now; resolves once all are ready. */
  start(): Promise<void> {
    while (this.#room() > 0) this.#start();
    if (this.#full()) return Promise.resolve();
    return new Promise((resolve, reject) => this.#started.push({ resolve, reject }));
  }

  /**
   * Workers that may still be started: the bound less the live ones and those still retiring
   * (a Worker told to shut down still runs until it has; not counting them once let a loop of
   * grow, start and shrink run 55 threads under a bound of 1).
   */
  #room(): number {
    return this.#size - this.#slots.length - this.#retiringSlots.size;
  }

  /** The pool is at its bound and every Worker in it is ready (what start() waits for). */
  #full(): boolean {
    return this.#slots.length >= this.#size && this.#slots.every((s) => s.ready);
  }

  stats(): AsyncStats {
    return {
      workers: this.#size,
      nice: this.#nice,
      idleMs: this.#idleMs,
      started: this.#slots.length,
      retiring: this.#retiringSlots.size,
      running: this.#slots.filter((s) => s.task !== undefined).length,
      queued: this.#queue.length,
      completed: this.#completed,
      failed: this.#failed,
      aborted: this.#aborted,
      coalesced: this.#coalesced,
    };
  }

  /** Queues one task; returns its id. */
  submit(handle: number, body: TaskBody, hooks: TaskHooks, transfer: ArrayBuffer[] = [], cancel?: Int32Array, progress?: BigUint64Array): number {
    const id = this.#next++;
    this.#queue.push({ id, handle, body, cancel, progress, transfer, hooks });
    this.#pump();
    return id;
  }

  /** Removes a task that has not started; false if it already runs (or ran). */
  unqueue(id: number): boolean {
    const at = this.#queue.findIndex((t) => t.id === id);
    if (at < 0) return false;
    this.#queue.splice(at, 1);
    this.#aborted++;
    this.#completed++;
    return true;
  }

  /**
   * The index `handle` was closed by its owner on this thread: every Worker that attached it
   * drops its reference after the task it runs (messages to a Worker are handled in order).
   */
  detach(handle: number): void {
    for (const slot of this.#slots) {
      if (!slot.handles.delete(handle)) continue;
      slot.worker.postMessage({ type: "detach", handle } satisfies Request);
    }
  }

  /** Whether any Worker still holds a reference to `handle` (for leak checks). */
  holds(handle: number): boolean {
    return this.#slots.some((s) => s.handles.has(handle));
  }

  /** A Promise that resolves once every Worker has handled every message sent so far. */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#slots.some((s) => s.task !== undefined || !s.ready)) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await Promise.all([...this.#slots.map((slot) => this.#roundTrip(slot)), ...this.#retiring]);
  }

  /**
   * Resolves once `slot`'s Worker has handled every message posted to it so far, or has ended
   * (retired or crashed: nothing it was sent is pending any more). The reply is routed by the
   * Worker's one handler (#onReply), so a retirement that starts while this waits (a shrink,
   * Deno's idle exit) cannot take the reply away from it: that once left asyncIdle pending
   * forever, and Deno's test runner failed with an empty event loop.
   */
  #roundTrip(slot: Slot): Promise<void> {
    if (!this.#slots.includes(slot)) return Promise.resolve();
    return new Promise((resolve) => {
      slot.roundTrips.push(resolve);
      this.#hold(slot);
      slot.worker.postMessage({ type: "detach", handle: -2 } satisfies Request);
    });
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      const slot = this.#slots.find((s) => s.ready && s.task === undefined);
      if (slot === undefined) {
        if (this.#room() > 0) this.#start();
        return;
      }
      const task = this.#queue.shift()!;
      if (slot.idle !== undefined) clearTimeout(slot.idle);
      slot.idle = undefined;
      slot.task = task;
      slot.more = task.body.op === "search" && !task.alone ? this.#takeSearches(task.handle) : [];
      this.#hold(slot);
      try {
        if (slot.more.length > 0) {
          const items = [task, ...slot.more].map((t) => ({ id: t.id, body: t.body }));
          slot.worker.postMessage({ type: "searches", handle: task.handle, items } satisfies Request, [task, ...slot.more].flatMap((t) => t.transfer));
          this.#coalesced += slot.more.length + 1;
        } else {
          const request: Request = { type: "task", id: task.id, handle: task.handle, body: task.body, cancel: task.cancel, progress: task.progress };
          slot.worker.postMessage(request, task.transfer);
        }
      } catch (error) {
        // A body that cannot be cloned (api.ts clones what callers give; this is the backstop):
        // its task fails here, typed, instead of the exception escaping this message handler
        // with the slot marked busy forever. Coalesced searches go back to the queue's front to
        // be posted one by one, so only the one that cannot be posted fails.
        const more = slot.more;
        slot.task = undefined;
        slot.more = [];
        this.#hold(slot);
        this.#idleLater(slot);
        if (more.length > 0) {
          for (const t of [task, ...more]) t.alone = true;
          this.#queue.unshift(task, ...more);
          continue;
        }
        const message = `the call could not be posted to a Worker: ${(error as Error)?.message}`;
        this.#settle(task, { type: "failed", id: task.id, status: Status.invalid_argument, name: "InvalidArgumentError", message, handleClosed: false });
        continue;
      }
      if (task.body.op !== "open") slot.handles.add(task.handle);
    }
  }

  /** Removes and returns the queued searches of `handle` (up to coalesceMax - 1), in order. */
  #takeSearches(handle: number): Task[] {
    const taken: Task[] = [];
    for (let i = 0; i < this.#queue.length && taken.length < coalesceMax - 1;) {
      const t = this.#queue[i];
      if (t.handle === handle && t.body.op === "search" && !t.alone) {
        taken.push(t);
        this.#queue.splice(i, 1);
      } else i++;
    }
    return taken;
  }

  #start(): void {
    const worker = new Worker(workerUrl, { type: "module" });
    const slot: Slot = { worker, ready: false, task: undefined, more: [], handles: new Set(), idle: undefined, roundTrips: [], retiring: false, gone: undefined, held: true };
    this.#slots.push(slot);
    // A Worker is not kept alive for its own sake: an idle pool must not hold the process open
    // (#hold). Deno's cannot be unref'd: there an idle Worker exits (#idleLater).
    if (typeof (worker as unknown as { unref?: unknown }).unref !== "function") this.#retireWhenIdle = true;
    worker.onmessage = (event: MessageEvent) => this.#onReply(slot, event.data as Reply);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault?.();
      const starting = !slot.ready;
      const tasks = slot.task ? [slot.task, ...slot.more] : [];
      slot.task = undefined;
      slot.more = [];
      // A retired slot is no longer in #slots: splicing at -1 once removed another Worker.
      const at = this.#slots.indexOf(slot);
      if (at >= 0) this.#slots.splice(at, 1);
      this.#ended(slot);
      for (const task of tasks) this.#settle(task, { type: "failed", id: task.id, name: "Error", message: `async Worker crashed: ${event.message}`, handleClosed: false });
      if (starting) this.#startFailed(event.message);
      else this.#restart();
    };
  }

  /**
   * A Worker failed before it was ready (its script or the library did not load: a bundle
   * without the Worker script, say). It is not started again by itself, which once looped
   * forever with the calls pending; with no Worker ready to run them, the queued calls and
   * start()'s callers fail with the reason. The next call tries a Worker again.
   */
  #startFailed(reason: string): void {
    if (this.#slots.some((s) => s.ready)) return;
    const message = `an async Worker could not start: ${reason}`;
    for (const task of this.#queue.splice(0)) this.#settle(task, { type: "failed", id: task.id, name: "Error", message, handleClosed: false });
    for (const { reject } of this.#started.splice(0)) reject(new Error(message));
  }

  /** The Worker of `slot` is gone: nothing waits on its replies any more. */
  #ended(slot: Slot): void {
    for (const resolve of slot.roundTrips.splice(0)) resolve();
    slot.worker.terminate();
    slot.gone?.();
    slot.gone = undefined;
    if (this.#retiringSlots.delete(slot)) this.#restart();
  }

  /** A Worker left the pool: start what start() still waits for, and what the queue needs. */
  #restart(): void {
    if (this.#started.length > 0) while (this.#room() > 0) this.#start();
    this.#startedIfReady();
    this.#pump();
  }

  /** `start()`'s callers hear once the pool is at its bound and every Worker in it is ready. */
  #startedIfReady(): void {
    if (this.#full()) for (const { resolve } of this.#started.splice(0)) resolve();
  }

  /**
   * Bun: a Worker holds the process open while the pool waits on it (it starts, runs a task,
   * answers a round trip or shuts down), and not while it idles. Unref'd for good, a running
   * call's Promise was left pending when a program's last line ran before it settled (a
   * `.then` without an `await`): the process exited and the call's work was lost.
   */
  #hold(slot: Slot): void {
    const busy = !slot.ready || slot.task !== undefined || slot.roundTrips.length > 0 || slot.retiring;
    if (busy === slot.held) return;
    const worker = slot.worker as unknown as { ref?: () => void; unref?: () => void };
    const set = busy ? worker.ref : worker.unref;
    if (typeof set !== "function") return;
    set.call(worker);
    slot.held = busy;
  }

  #onReply(slot: Slot, reply: Reply): void {
    // A retired Worker ran no task when it was retired: it is only waited on to start and end.
    if (slot.retiring && reply.type !== "ready" && reply.type !== "detached") return;
    switch (reply.type) {
      case "ready":
        // Before any task (a Worker handles its messages in order). Nothing is posted before
        // "ready": Bun drops messages that reach a Worker before it sets its handler.
        slot.ready = true;
        if (slot.retiring) {
          // Retired while it started (a shrink): told now, when it can hear it.
          slot.worker.postMessage({ type: "shutdown" } satisfies Request);
          return;
        }
        slot.worker.postMessage({ type: "nice", value: this.#nice } satisfies Request);
        this.#startedIfReady();
        this.#pump();
        this.#hold(slot);
        this.#idleLater(slot);
        return;
      case "progress":
        if (slot.task?.id === reply.id) slot.task.hooks.progress?.(reply.done, reply.total);
        return;
      case "niced":
        return;
      case "detached":
        // -2: a drain's round trip; -1: the answer to "shutdown" (its references are released).
        if (reply.handle === -2) {
          slot.roundTrips.shift()?.();
          this.#hold(slot);
        } else if (reply.handle === -1) this.#ended(slot);
        return;
      case "batch": {
        if (slot.task === undefined) return;
        const tasks = [slot.task, ...slot.more];
        slot.task = undefined;
        slot.more = [];
        for (const r of reply.replies) {
          const task = tasks.find((t) => t.id === r.id);
          if (task === undefined) continue;
          if (r.type === "failed" && r.handleClosed) slot.handles.delete(task.handle);
          this.#settle(task, r);
        }
        if (this.#slots.length > this.#size) this.#retire(slot);
        this.#pump();
        this.#hold(slot);
        this.#idleLater(slot);
        return;
      }
      case "done":
      case "failed": {
        const task = slot.task;
        if (task === undefined || task.id !== reply.id) return;
        slot.task = undefined;
        if (reply.type === "failed" && reply.handleClosed) slot.handles.delete(task.handle);
        if (this.#slots.length > this.#size) this.#retire(slot);
        this.#settle(task, reply);
        this.#pump();
        this.#hold(slot);
        this.#idleLater(slot);
        return;
      }
    }
  }

  #settle(task: Task, reply: Extract<Reply, { type: "done" | "failed" }>): void {
    this.#completed++;
    if (reply.type === "failed") this.#failed++;
    else if (reply.aborted) this.#aborted++;
    task.hooks.settle(reply);
  }

  /** Deno: an idle Worker exits after idleMs (see idleRetireMsDefault). */
  #idleLater(slot: Slot): void {
    if (!this.#retireWhenIdle || slot.task !== undefined || !this.#slots.includes(slot)) return;
    if (slot.idle !== undefined) clearTimeout(slot.idle);
    slot.idle = undefined;
    // Beyond a timer's range the exit is not planned at all (a longer delay fires after 1 ms).
    if (!(this.#idleMs <= timerMaxMs)) return;
    slot.idle = setTimeout(() => {
      if (slot.task === undefined && this.#slots.includes(slot)) this.#retire(slot);
    }, this.#idleMs);
  }

  #retire(slot: Slot): void {
    const at = this.#slots.indexOf(slot);
    if (slot.retiring || at < 0) return;
    if (slot.idle !== undefined) clearTimeout(slot.idle);
    slot.idle = undefined;
    slot.retiring = true;
    this.#slots.splice(at, 1);
    this.#retiringSlots.add(slot);
    this.#hold(slot);
    // The Worker exits once its references are released (its reply to "shutdown", #ended). One
    // that is not ready yet is told when it is (Bun drops messages a Worker gets before then).
    const gone = new Promise<void>((resolve) => {
      slot.gone = resolve;
    });
    if (slot.ready) slot.worker.postMessage({ type: "shutdown" } satisfies Request);
    this.#retiring.add(gone);
    void gone.then(() => this.#retiring.delete(gone));
    this.#startedIfReady();
  }
}

/** The process's pool (one per JS thread that uses the async API). */
export const pool: Pool = new Pool();
