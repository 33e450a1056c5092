/**
 * The longest event-loop gap while an index is built: a 1 ms setInterval records the time
 * between its ticks while `addAsync` (or, with --sync, the blocking `add`) builds the index.
 * A benchmark, not a test. Prints one JSON line with the load average beside the numbers.
 *
 *   bun bench/eventloop.ts --dataset clustered:200000:128 --threads 2
 *   deno run -A bench/eventloop.ts --dataset fashion-mnist --threads 1 [--sync] [--limit 20000] [--nice 0]
 * `idle_max_gap_ms` is the longest gap over 3 s before the build, with nothing running: the
 * floor other processes on the machine set.
 */
import { readFileSync } from "node:fs";
import { asyncStart, configureAsync, Index } from "../mod.ts";
import { loadDataset, parseDatasetSpec } from "./data.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const runtime = typeof g.Bun !== "undefined" ? "bun" : "deno";
const args: string[] = runtime === "bun" ? g.process.argv.slice(2) : g.Deno.args;
const flag = (name: string, fallback: string) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};
const spec = parseDatasetSpec(flag("dataset", "clustered:200000:128"));
const threads = Number(flag("threads", "2"));
const limit = Number(flag("limit", "Infinity"));
const sync = args.includes("--sync");
const nice = Number(flag("nice", "0"));
configureAsync({ nice });
const data = loadDataset(spec, limit, 0);
const n = data.baseCount;
const keys = BigUint64Array.from({ length: n }, (_, i) => BigInt(i));
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

using index = new Index({ dimensions: data.dimensions });
const gaps: number[] = [];
let last = performance.now();
const timer = setInterval(() => {
  const now = performance.now();
  gaps.push(now - last);
  last = now;
}, 1);
// The floor on this machine: the longest gap over 3 s with nothing running (other users' load).
await new Promise((r) => setTimeout(r, 3000));
const idle = Math.max(...gaps);
gaps.length = 0;
// The pool's start, measured apart: once per process, before serving (`asyncStart`).
last = performance.now();
if (!sync) await asyncStart();
await new Promise((r) => setTimeout(r, 100));
const startGap = gaps.length > 0 ? Math.max(...gaps) : 0;
gaps.length = 0;
const loadBefore = load();
const start = performance.now();
let progressCalls = 0;
last = performance.now();
if (sync) index.add(keys, data.base, { threads });
else await index.addAsync(keys, data.base, { threads, onProgress: () => progressCalls++ });
const seconds = (performance.now() - start) / 1000;
// One more tick, so a blocking build's gap is recorded too.
await new Promise((r) => setTimeout(r, 5));
clearInterval(timer);
const sorted = [...gaps].sort((a, b) => a - b);
const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
console.log(JSON.stringify({
  runtime,
  dataset: data.name,
  n,
  d: data.dimensions,
  mode: sync ? "sync add" : "addAsync",
  threads,
  nice,
  idle_max_gap_ms: Number(idle.toFixed(1)),
  pool_start_max_gap_ms: Number(startGap.toFixed(1)),
  build_s: Number(seconds.toFixed(2)),
  ticks: gaps.length,
  max_gap_ms: Number(sorted[sorted.length - 1].toFixed(1)),
  p99_gap_ms: Number(pct(0.99).toFixed(2)),
  p50_gap_ms: Number(pct(0.5).toFixed(2)),
  progress_calls: progressCalls,
  size: index.size,
  load_before: loadBefore,
  load_after: load(),
}));
