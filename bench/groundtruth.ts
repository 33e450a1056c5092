// Exact k-nearest neighbours by brute force (Workers over SharedArrayBuffers), cached under
// `.cache/bench/groundtruth/` keyed by data set, subsample sizes, metric and k; plus the sanity
// check against a naive scan and the recall computation used by every library run.
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { CACHE_DIR, readExactly, type Dataset, type Metric } from "./data.ts";
import type { WorkerJob } from "./groundtruth-worker.ts";
import { Scorer } from "./score.ts";

export const GROUND_TRUTH_K = 100;

/** For each query, the k nearest base ids ascending by score (ties by id), and their scores. */
export interface GroundTruth {
  queryCount: number;
  k: number;
  ids: Uint32Array;
  scores: Float64Array;
}

export function groundTruthPath(ds: Dataset, metric: Metric, k = GROUND_TRUTH_K): string {
  return join(CACHE_DIR, "groundtruth", `${ds.name}-n${ds.baseCount}-q${ds.queryCount}-${metric}-k${k}.bin`);
}

/** Reads the cached ground truth, or returns null when it has not been computed yet. */
export function readGroundTruth(ds: Dataset, metric: Metric, k = GROUND_TRUTH_K): GroundTruth | null {
  const path = groundTruthPath(ds, metric, k);
  if (!existsSync(path)) return null;
  const fd = openSync(path, "r");
  try {
    const header = new Uint32Array(4);
    readExactly(fd, path, new Uint8Array(header.buffer), 0);
    const [queryCount, kStored, baseCount] = header;
    const n = queryCount * kStored;
    if (queryCount !== ds.queryCount || kStored !== k || baseCount !== ds.baseCount || fstatSync(fd).size !== 16 + n * 12) {
      throw new Error(`${path}: header or size does not match the data set; delete it to recompute`);
    }
    const scores = new Float64Array(n);
    const ids = new Uint32Array(n);
    readExactly(fd, path, new Uint8Array(scores.buffer), 16);
    readExactly(fd, path, new Uint8Array(ids.buffer), 16 + n * 8);
    return { queryCount, k, scores, ids };
  } finally {
    closeSync(fd);
  }
}

function writeGroundTruth(ds: Dataset, metric: Metric, gt: GroundTruth): void {
  const path = groundTruthPath(ds, metric, gt.k);
  mkdirSync(dirname(path), { recursive: true });
  const header = Buffer.from(new Uint32Array([gt.queryCount, gt.k, ds.baseCount, 0]).buffer);
  const tmp = `${path}.tmp${process.pid}`;
  writeFileSync(tmp, Buffer.concat([header, Buffer.from(gt.scores.buffer), Buffer.from(gt.ids.buffer)]));
  renameSync(tmp, path);
}

/**
 * Returns the exact k-NN of every query, computing and caching it on first use. Cost:
 * queryCount * baseCount * d multiply-adds spread over `threads` Workers (Fashion-MNIST with 2
 * threads: about 4.7e11 flops). Prints progress to stderr.
 */
export async function groundTruth(ds: Dataset, metric: Metric, threads = 2, k = GROUND_TRUTH_K): Promise<GroundTruth> {
  const cached = readGroundTruth(ds, metric, k);
  if (cached) return cached;
  const started = performance.now();
  let printed = started;
  process.stderr.write(`ground truth ${ds.name} ${metric}: brute force over ${ds.queryCount} queries x ${ds.baseCount} base, ${threads} workers\n`);
  const gt = await bruteForce(ds, metric, threads, k, (done) => {
    const now = performance.now();
    if (now - printed < 5000 && done < ds.queryCount) return;
    printed = now;
    const seconds = (now - started) / 1000;
    const eta = (seconds * (ds.queryCount - done)) / done;
    process.stderr.write(`  ${done}/${ds.queryCount} queries, ${seconds.toFixed(0)} s, eta ${eta.toFixed(0)} s\n`);
  });
  const seconds = (performance.now() - started) / 1000;
  const gflops = (2 * ds.queryCount * ds.baseCount * ds.dimensions) / seconds / 1e9;
  process.stderr.write(`ground truth ${ds.name} ${metric}: ${seconds.toFixed(1)} s (${gflops.toFixed(1)} GFLOP/s, ${threads} workers)\n`);
  const problems = sanityCheck(ds, metric, gt);
  if (problems.length > 0) throw new Error(`ground truth failed its sanity check:\n${problems.join("\n")}`);
  const canary = canaryCheck(ds, metric, gt);
  if (canary.length > 0) throw new Error(`ground truth sanity check missed a planted error:\n${canary.join("\n")}`);
  process.stderr.write(`ground truth ${ds.name} ${metric}: sanity check passed against a naive scan (and caught its canaries)\n`);
  writeGroundTruth(ds, metric, gt);
  return gt;
}

/** Splits the queries into `threads` contiguous ranges, one Worker each. */
export async function bruteForce(ds: Dataset, metric: Metric, threads: number, k: number, progress?: (done: number) => void): Promise<GroundTruth> {
  const d = ds.dimensions;
  const shared = (src: Float32Array) => {
    const sab = new SharedArrayBuffer(src.byteLength);
    new Float32Array(sab).set(src);
    return sab;
  };
  const base = shared(ds.base);
  const queries = shared(ds.queries);
  const ids = new SharedArrayBuffer(ds.queryCount * k * 4);
  const scores = new SharedArrayBuffer(ds.queryCount * k * 8);
  const kept = Math.min(k, ds.baseCount);
  if (kept < k) throw new Error(`ground truth: k=${k} is larger than the base set (${ds.baseCount})`);
  let done = 0;
  const workers = Math.max(1, Math.min(threads, ds.queryCount));
  const jobs: Promise<void>[] = [];
  for (let w = 0; w < workers; w++) {
    const job: WorkerJob = {
      base, queries, ids, scores, baseCount: ds.baseCount, dimensions: d, k, metric,
      queryBegin: Math.floor((ds.queryCount * w) / workers),
      queryEnd: Math.floor((ds.queryCount * (w + 1)) / workers),
    };
    jobs.push(new Promise((resolve, reject) => {
      const worker = new Worker(new URL("./groundtruth-worker.ts", import.meta.url).href);
      worker.onmessage = (event: MessageEvent) => {
        if (event.data.done) {
          done += event.data.done;
          progress?.(done);
        } else if (event.data.finished) {
          worker.terminate();
          resolve();
        }
      };
      worker.onerror = (event) => reject(new Error(`ground truth worker failed: ${event.message}`));
      worker.postMessage(job);
    }));
  }
  await Promise.all(jobs);
  return { queryCount: ds.queryCount, k, ids: new Uint32Array(ids), scores: new Float64Array(scores) };
}

/**
 * Checks a few queries (first, middle, last) against a naive full scan that computes the
 * distance directly (for l2: the sum of squared differences, not the dot-product expansion).
 * Returns human-readable problems; an empty list means the ground truth agrees.
 */
export function sanityCheck(ds: Dataset, metric: Metric, gt: GroundTruth, probes = 3): string[] {
  const problems: string[] = [];
  const d = ds.dimensions;
  const scorer = new Scorer(ds, metric);
  const picks = new Set<number>();
  for (let i = 0; i < probes; i++) picks.add(Math.floor(((ds.queryCount - 1) * i) / Math.max(1, probes - 1)));
  for (const q of picks) {
    const naive = new Float64Array(ds.baseCount);
    for (let b = 0; b < ds.baseCount; b++) {
      if (metric === "l2") {
        let s = 0;
        for (let j = 0; j < d; j++) {
          const diff = ds.queries[q * d + j] - ds.base[b * d + j];
          s += diff * diff;
        }
        naive[b] = s;
      } else {
        naive[b] = scorer.score(q, b);
      }
    }
    const sorted = Float64Array.from(naive).sort();
    const tolerance = (v: number) => 1e-9 * Math.max(1, Math.abs(v));
    const kth = sorted[gt.k - 1];
    for (let r = 0; r < gt.k; r++) {
      const id = gt.ids[q * gt.k + r];
      const score = gt.scores[q * gt.k + r];
      if (Math.abs(score - sorted[r]) > tolerance(sorted[r])) {
        problems.push(`query ${q} rank ${r}: ground truth score ${score}, naive scan ${sorted[r]}`);
        break;
      }
      if (!(id < ds.baseCount) || naive[id] > kth + tolerance(kth)) {
        problems.push(`query ${q} rank ${r}: id ${id} has naive score ${naive[id]}, beyond the k-th ${kth}`);
        break;
      }
    }
  }
  return problems;
}

/**
 * The checker's canary: plants two errors in a copy of the ground truth (a wrong score at rank 0
 * of the first query, and at the last query a far id in place of its true nearest neighbour) and
 * returns what the sanity check failed to catch.
 */
export function canaryCheck(ds: Dataset, metric: Metric, gt: GroundTruth): string[] {
  const missed: string[] = [];
  const badScore = { ...gt, scores: Float64Array.from(gt.scores) };
  badScore.scores[0] += 1;
  if (sanityCheck(ds, metric, badScore).length === 0) missed.push("a score off by 1 at query 0 rank 0");
  const scorer = new Scorer(ds, metric);
  const last = gt.queryCount - 1;
  let farthest = 0;
  for (let b = 1; b < ds.baseCount; b++) if (scorer.score(last, b) > scorer.score(last, farthest)) farthest = b;
  const badId = { ...gt, ids: Uint32Array.from(gt.ids) };
  badId.ids[last * gt.k] = farthest;
  if (sanityCheck(ds, metric, badId).length === 0) missed.push(`the farthest id ${farthest} planted at query ${last} rank 0`);
  return missed;
}

/**
 * recall@k: the fraction of returned ids (distinct, per query) whose exact score is no worse than
 * the k-th true neighbour's, as ann-benchmarks counts it, so ties at the boundary are not
 * penalised. `ids[q*k + i]` for i < counts[q]; distances the library reports are ignored.
 */
export function recallAtK(scorer: Scorer, gt: GroundTruth, k: number, ids: ArrayLike<number>, counts?: ArrayLike<number>): number {
  if (k > gt.k) throw new Error(`recall@${k} needs ground truth with k >= ${k}, have ${gt.k}`);
  let hits = 0;
  const seen = new Set<number>();
  for (let q = 0; q < gt.queryCount; q++) {
    const kth = gt.scores[q * gt.k + k - 1];
    const threshold = kth + 1e-9 * Math.max(1, Math.abs(kth));
    const count = counts ? Math.min(k, counts[q]) : k;
    seen.clear();
    for (let i = 0; i < count; i++) {
      const id = ids[q * k + i];
      if (seen.has(id) || !(id >= 0 && id < scorer.dataset.baseCount)) continue;
      seen.add(id);
      if (scorer.score(q, id) <= threshold) hits++;
    }
  }
  return hits / (gt.queryCount * k);
}
