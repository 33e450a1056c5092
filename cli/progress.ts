/**
 * Progress bars for the CLI: on stderr, and only when stderr is a terminal, so that pipes, logs
 * and `--json` consumers never see a control character. A bar appears once a step has run for
 * `QUIVER_PROGRESS_DELAY_MS` (default 1000): steps shorter than a second draw nothing. Redraws at
 * most 10 times a second.
 */
import process from "node:process";

/** Whether stderr is a terminal (Bun and Deno both implement node:process's isTTY). */
export function stderrIsTerminal(): boolean {
  // deno-lint-ignore no-explicit-any
  const deno = (globalThis as any).Deno;
  if (deno?.stderr?.isTerminal) return deno.stderr.isTerminal();
  return process.stderr.isTTY === true;
}

function delayMs(): number {
  const raw = process.env.QUIVER_PROGRESS_DELAY_MS;
  const value = raw === undefined ? 1000 : Number(raw);
  return Number.isFinite(value) && value >= 0 ? value : 1000;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return `${m}m${String(s).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function count(n: number, bytes: boolean): string {
  if (!bytes) return Math.round(n).toLocaleString("en-US");
  const units = ["B", "KB", "MB", "GB", "TB"];
  let u = 0;
  while (n >= 1000 && u < units.length - 1) (n /= 1000), u++;
  return `${n.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/** One bar: `update(done)` as work advances, `done()` at the end. */
export class Progress {
  readonly #label: string;
  readonly #total: number | undefined;
  readonly #unit: string;
  readonly #bytes: boolean;
  readonly #enabled: boolean;
  readonly #start = performance.now();
  readonly #delay = delayMs();
  // No draw yet: the first update past the delay draws (performance.now() starts near 0).
  #lastDraw = -Infinity;
  #drawn = false;
  #done = 0;

  /**
   * `total` in `unit`s (undefined: unknown, then only the count and rate show); `unit` "bytes"
   * prints sizes. `enabled` defaults to "stderr is a terminal".
   */
  constructor(label: string, total: number | undefined, unit = "vectors", enabled = stderrIsTerminal()) {
    this.#label = label;
    this.#total = total;
    this.#unit = unit;
    this.#bytes = unit === "bytes";
    this.#enabled = enabled;
  }

  /** Sets how much is done; redraws when due. O(1). */
  update(done: number): void {
    this.#done = done;
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#start < this.#delay || now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    this.#draw(now);
  }

  #draw(now: number): void {
    const seconds = (now - this.#start) / 1000;
    const rate = this.#done / Math.max(seconds, 1e-3);
    // A pseudo-terminal without a size reports 0 columns: assume 100.
    const columns = Math.max(60, Math.min(process.stderr.columns || 100, 160));
    let line: string;
    if (this.#total !== undefined && this.#total > 0) {
      const fraction = Math.min(1, this.#done / this.#total);
      const eta = rate > 0 ? (this.#total - this.#done) / rate : Infinity;
      const stats = ` ${(fraction * 100).toFixed(0).padStart(3)}% ${count(this.#done, this.#bytes)}/${count(this.#total, this.#bytes)}` +
        ` ${count(rate, this.#bytes)}/s ETA ${duration(eta)}`;
      // The numbers are kept whole; the bar takes what is left, and a long label is cut on the left.
      const label = this.#label.length > columns - stats.length - 14 ? `...${this.#label.slice(-(columns - stats.length - 17))}` : this.#label;
      const width = Math.max(10, columns - label.length - stats.length - 4);
      const filled = Math.round(fraction * width);
      line = `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}]${stats}`;
    } else {
      line = `${this.#label} ${count(this.#done, this.#bytes)} ${this.#unit} ${count(rate, this.#bytes)}/s ${duration(seconds)}`;
    }
    process.stderr.write(`\r\x1b[2K${line.slice(0, columns - 1)}`);
    this.#drawn = true;
  }

  /** Draws the final state (when a bar was shown) and ends the line. Idempotent. */
  done(): void {
    if (!this.#enabled || !this.#drawn) return;
    this.#draw(performance.now());
    process.stderr.write("\n");
    this.#drawn = false;
  }
}

/**
 * A step that is one native call (verify, compact, backup): no progress can be read from it, so
 * on a terminal it shows what runs, then how long it took.
 */
export function step<T>(label: string, fn: () => T, enabled = stderrIsTerminal()): T {
  if (enabled) process.stderr.write(`${label}...`);
  const start = performance.now();
  try {
    return fn();
  } finally {
    if (enabled) process.stderr.write(` ${((performance.now() - start) / 1000).toFixed(2)}s\n`);
  }
}
