// Exact scores (smaller is nearer) shared by the brute-force workers and the recall check. Both
// sides compute a dot product and squared norms in float64 in index order, so the same pair gives
// bit-identical scores on both sides and ties are judged exactly.
import type { Dataset, Metric } from "./data.ts";

/** Sum of a[ao+j] * b[bo+j] over j in order, in float64 (float32 products are exact in float64). */
export function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += a[ao + j] * b[bo + j];
  return s;
}

/** Squared norms of every row, float64. */
export function squaredNorms(m: Float32Array, count: number, d: number): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = dot(m, i * d, m, i * d, d);
  return out;
}

/**
 * Turns a dot product into the score the ground truth ranks by: squared L2 for "l2", the negated
 * dot product for "ip", and 1 - cosine similarity for "cosine" (a zero vector scores 1).
 */
export function scoreFromDot(metric: Metric, dotValue: number, queryNorm2: number, baseNorm2: number): number {
  if (metric === "l2") return queryNorm2 + baseNorm2 - 2 * dotValue;
  if (metric === "ip") return -dotValue;
  const denominator = Math.sqrt(queryNorm2) * Math.sqrt(baseNorm2);
  return denominator === 0 ? 1 : 1 - dotValue / denominator;
}

/** Scores any (query, base id) pair of one data set; precomputes norms once (O(n*d)). */
export class Scorer {
  readonly baseNorms: Float64Array;
  readonly queryNorms: Float64Array;
  constructor(readonly dataset: Dataset, readonly metric: Metric) {
    const d = dataset.dimensions;
    this.baseNorms = squaredNorms(dataset.base, dataset.baseCount, d);
    this.queryNorms = squaredNorms(dataset.queries, dataset.queryCount, d);
  }
  score(query: number, id: number): number {
    const { base, queries, dimensions: d } = this.dataset;
    const value = dot(queries, query * d, base, id * d, d);
    return scoreFromDot(this.metric, value, this.queryNorms[query], this.baseNorms[id]);
  }
}
