/** The CLI's commands: each takes parsed arguments, writes its result, and throws on failure. */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import process from "node:process";
import { Index, type Metric, ReadOnlyError, type Storage } from "../mod.ts";
import { FormatError, formatOf, JsonlWriter, NpyWriter, openVectors, type VectorSource } from "../formats.ts";
import { metricOfDistance } from "../src/formats/hdf5.ts";
import { DocStore, docsPath, filteredSearch, matchesFilter } from "../src/docstore.ts";
import { recallQpsSvg } from "../bench/svg.ts";
import { CorruptError, defaultThreads, InputError, intFlag, jsonFlag, output, table, UsageError } from "./common.ts";
import { Progress, step } from "./progress.ts";

type Values = Record<string, string | boolean | undefined>;
interface Args {
  positionals: string[];
  values: Values;
}

const METRICS = ["l2", "ip", "cosine"];
const METRIC_NAMES = ["l2", "ip", "cosine"]; // by the core's metric code
const STORAGES = ["f32", "f16", "i8"];

/** The files of a persistent index (README: Index.open), plus the CLI's sidecar. */
function indexFiles(path: string): string[] {
  return [path, `${path}.graph`, `${path}.upper`, `${path}.vectors`, `${path}.wal`, docsPath(path)];
}

/**
 * Opens an existing index; a missing one is bad input, not a new empty index. Read commands open
 * read-only (many may run beside one writer); an index that needs recovery first (a log left by
 * a killed writer, a damaged header copy) refuses a read-only open with ReadOnlyError, so it is
 * opened once writable, which recovers it, and then read-only again.
 */
function openExisting(path: string, readOnly: boolean, validate: "fast" | "full" = "fast"): Index {
  if (!existsSync(path)) throw new InputError(`no index at ${path} (build one with: quiver build <input> ${path})`);
  try {
    return Index.open(path, { create: false, readOnly, validate });
  } catch (error) {
    if (!readOnly || !(error instanceof ReadOnlyError)) throw error;
  }
  process.stderr.write(`quiver: ${path} needs recovery (an interrupted writer or a damaged header copy): recovering it\n`);
  Index.open(path, { create: false, validate }).close();
  return Index.open(path, { create: false, readOnly, validate });
}

function stringFlag(values: Values, flag: string): string | undefined {
  const v = values[flag];
  return typeof v === "string" ? v : undefined;
}

function choice<T extends string>(values: Values, flag: string, allowed: string[]): T | undefined {
  const v = stringFlag(values, flag);
  if (v !== undefined && !allowed.includes(v)) throw new UsageError(`--${flag} ${v}: expected one of ${allowed.join(", ")}`);
  return v as T | undefined;
}

async function openInput(path: string, values: Values): Promise<VectorSource> {
  if (!existsSync(path)) throw new InputError(`no input file ${path}`);
  const format = choice<"npy">(values, "format", ["npy", "fvecs", "bvecs", "ivecs", "jsonl", "hdf5", "idx"]);
  return await openVectors(path, {
    format,
    idField: stringFlag(values, "id-field"),
    vectorField: stringFlag(values, "vector-field"),
    metadataField: stringFlag(values, "metadata-field"),
    dataset: stringFlag(values, "dataset"),
  });
}

function maxKey(index: Index): bigint {
  let max = -1n;
  for (const key of index.keys()) if (key > max) max = key;
  return max;
}

/** `quiver build <input> <index>`: streams the input into a new (or, with --append, existing) index. */
export async function cmdBuild({ positionals: [input, path], values }: Args): Promise<void> {
  const json = values.json === true;
  const append = values.append === true;
  const threads = intFlag(values.threads, "threads", defaultThreads(), 1, 256);
  const batchSize = intFlag(values.batch, "batch", 4096, 1, 1 << 20);
  const m = intFlag(values.m, "m", 16, 2, 128);
  const efConstruction = intFlag(values["ef-construction"], "ef-construction", 128, 1, 65536);
  let metric = choice<Metric>(values, "metric", METRICS);
  const storage = choice<Storage>(values, "storage", STORAGES);
  const existed = indexFiles(path).filter((f) => existsSync(f));
  if (existsSync(path) && !append) throw new UsageError(`${path} exists: pass --append to add to it, or choose another path`);
  const source = await openInput(input, values);
  const distance = (source as { distance?: string }).distance;
  metric ??= metricOfDistance(distance) ?? "l2";
  const start = performance.now();
  let index: Index | undefined;
  let added = 0;
  let ok = false;
  try {
    // Appending keeps the index's own parameters: only what the user gave is passed (and must match).
    index = existsSync(path)
      ? Index.open(path, { create: false, ...(values.metric ? { metric } : {}), ...(storage ? { storage } : {}) })
      : Index.open(path, { dimensions: source.dimensions, metric, m, efConstruction, storage, create: true });
    metric = (METRIC_NAMES[Number(index.stats().metric)] ?? metric) as Metric;
    if (index.dimensions !== source.dimensions) {
      throw new InputError(`${input} has ${source.dimensions} dimensions, the index ${path} has ${index.dimensions}`);
    }
    const docs = append ? DocStore.load(path) : DocStore.empty(path);
    let next = append ? [maxKey(index) + 1n, docs.nextKey()].reduce((a, b) => (a > b ? a : b)) : 0n;
    const seenKeys = new Set<bigint>();
    const seenIds = new Set<string>();
    const known = source.count !== undefined;
    const progress = new Progress(`building ${path}`, known ? source.count : source.bytes, known ? "vectors" : "bytes");
    for await (const batch of source.batches(batchSize)) {
      const keys = new BigUint64Array(batch.count);
      for (let i = 0; i < batch.count; i++) {
        const id = batch.ids?.[i];
        const row = batch.start + i;
        let key: bigint;
        if (typeof id === "string") {
          if (seenIds.has(id)) throw new FormatError("BAD_RECORD", input, `record ${row + 1}: id "${id}" appears twice`, row + 1);
          seenIds.add(id);
          key = docs.keyOf(id) ?? next++;
        } else if (typeof id === "bigint") {
          key = id;
        } else {
          key = next++;
        }
        if (seenKeys.has(key)) throw new FormatError("BAD_RECORD", input, `record ${row + 1}: id ${key} appears twice`, row + 1);
        seenKeys.add(key);
        keys[i] = key;
        const metadata = batch.metadata?.[i];
        if (typeof id === "string" || metadata !== undefined) {
          docs.set(key, { ...(typeof id === "string" ? { id } : {}), ...(metadata !== undefined ? { metadata } : {}) });
        } else if (append) docs.delete(key);
      }
      index.add(keys, batch.vectors, { threads });
      added += batch.count;
      progress.update(known ? added : batch.bytesRead);
    }
    progress.done();
    if (docs.dirty) docs.save();
    const size = index.size;
    index.close();
    ok = true;
    const seconds = (performance.now() - start) / 1000;
    output(json, { input, index: path, format: source.format, added, size, dimensions: source.dimensions, metric, seconds, sidecar: docs.size > 0 ? docs.path : null }, () =>
      `built ${path}: ${added.toLocaleString("en-US")} vectors of ${source.dimensions} dimensions from ${input} (${source.format}, metric ${metric}) ` +
      `in ${seconds.toFixed(2)} s (${Math.round(added / Math.max(seconds, 1e-6)).toLocaleString("en-US")} vectors/s); size ${size.toLocaleString("en-US")}` +
      (docs.size > 0 ? `; ids and metadata in ${docs.path}` : ""));
  } finally {
    source.close();
    if (!ok) {
      index?.close();
      // A failed build leaves nothing behind but what was there before it.
      if (!append) for (const f of indexFiles(path)) if (!existed.includes(f)) rmSync(f, { force: true });
    }
  }
}

async function queryVector(values: Values): Promise<Float32Array> {
  const vector = stringFlag(values, "vector");
  const from = stringFlag(values, "from");
  if ((vector === undefined) === (from === undefined)) throw new UsageError("search takes one of --vector JSON or --from <file> [--row N]");
  if (vector !== undefined) {
    const parsed = jsonFlag(vector, "vector");
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((x) => typeof x === "number")) {
      throw new UsageError(`--vector must be a JSON array of numbers, e.g. [0.1, 0.2]; got ${vector}`);
    }
    return Float32Array.from(parsed);
  }
  const row = intFlag(values.row, "row", 0, 0);
  const source = await openInput(from!, values);
  try {
    return (await source.row(row)).vectors;
  } finally {
    source.close();
  }
}

/** `quiver search <index>`: the k nearest neighbours of one vector, with ids and metadata. */
export async function cmdSearch({ positionals: [path], values }: Args): Promise<void> {
  const json = values.json === true;
  const k = intFlag(values.k, "k", 10, 1, 1 << 20);
  const ef = values.ef === undefined ? Math.max(64, k) : intFlag(values.ef, "ef", 64, 1, 1 << 20);
  const filter = values.filter === undefined ? undefined : jsonFlag(values.filter as string, "filter");
  if (filter !== undefined && (filter === null || typeof filter !== "object" || Array.isArray(filter))) {
    throw new UsageError(`--filter must be a JSON object of metadata fields, e.g. '{"lang": "en"}'`);
  }
  const query = await queryVector(values);
  using index = openExisting(path, true);
  if (query.length !== index.dimensions) throw new InputError(`the query has ${query.length} dimensions, the index ${index.dimensions}`);
  const docs = DocStore.load(path);
  let keys: bigint[], distances: number[];
  if (filter !== undefined) {
    if (docs.size === 0) throw new InputError(`--filter: ${path} has no metadata (build it from JSON Lines records with "metadata")`);
    const f = filter as Record<string, unknown>;
    ({ keys, distances } = filteredSearch(index, query, k, (key) => matchesFilter(f, { key, ...(docs.get(key) ?? {}) }), ef));
  } else {
    const found = index.search(query, k, { ef, rerank: values["no-rerank"] !== true });
    keys = Array.from(found.keys);
    distances = Array.from(found.distances);
  }
  const results = keys.map((key, i) => {
    const entry = docs.get(key);
    return { key, id: entry?.id ?? null, distance: distances[i], metadata: entry?.metadata ?? null };
  });
  output(json, { index: path, k, ef, results }, () =>
    results.length === 0 ? "no results" : table(
      ["rank", "key", "id", "distance", "metadata"],
      results.map((r, i) => [i + 1, r.key.toString(), r.id ?? "", Number(r.distance.toPrecision(6)), r.metadata === null ? "" : JSON.stringify(r.metadata)]),
    ));
}

/** `quiver get <index> <key-or-id>`. */
export function cmdGet({ positionals: [path, key], values }: Args): void {
  using index = openExisting(path, true);
  const docs = DocStore.load(path);
  let k: bigint | undefined;
  if (/^\d+$/.test(key) && BigInt(key) < 2n ** 64n) k = BigInt(key);
  k = docs.keyOf(key) ?? k;
  if (k === undefined) throw new InputError(`"${key}" is neither a key nor an id in ${path}`);
  const vector = index.get(k);
  if (vector === undefined) throw new InputError(`key ${key} is not in ${path}`);
  const entry = docs.get(k);
  output(values.json === true, { key: k, id: entry?.id ?? null, vector: Array.from(vector), metadata: entry?.metadata ?? null }, () =>
    [`key ${k}`, ...(entry?.id ? [`id ${entry.id}`] : []), ...(entry?.metadata !== undefined ? [`metadata ${JSON.stringify(entry.metadata)}`] : []), `vector ${JSON.stringify(Array.from(vector))}`]
      .join("\n"));
}

function plainStats(index: Index): Record<string, number | string> {
  const s = index.stats() as Record<string, number | bigint>;
  const out: Record<string, number | string> = {};
  for (const [name, v] of Object.entries(s)) out[name] = typeof v === "bigint" ? Number(v) : v;
  out.metric = METRIC_NAMES[Number(s.metric)] ?? String(s.metric);
  out.storage = STORAGES[Number(s.storage)] ?? String(s.storage);
  return out;
}

/** `quiver stats <index>`. */
export function cmdStats({ positionals: [path], values }: Args): void {
  using index = openExisting(path, true);
  const stats = plainStats(index);
  const docs = DocStore.load(path);
  output(values.json === true, { index: path, stats, sidecar: { path: docs.path, entries: docs.size } }, () =>
    [...Object.entries(stats).map(([k, v]) => `${k.padEnd(22)} ${typeof v === "number" ? v.toLocaleString("en-US") : v}`), `${"sidecar_entries".padEnd(22)} ${docs.size}`].join("\n"));
}

/** `quiver verify <index>`: exit 0 when clean, 4 (CorruptError) when not. */
export function cmdVerify({ positionals: [path], values }: Args): void {
  const json = values.json === true;
  using index = step(`opening ${path}${values.full ? " (checksumming every byte)" : ""}`, () => openExisting(path, true, values.full ? "full" : "fast"));
  const raw = step(`verifying ${path}`, () => index.verify()) as unknown as Record<string, number | bigint | boolean>;
  const report: Record<string, number | boolean> = {};
  for (const [k, v] of Object.entries(raw)) report[k] = typeof v === "bigint" ? Number(v) : v;
  DocStore.load(path); // A damaged sidecar is bad input (exit 3) even when the index is clean.
  const text = () => [`${path}: ${report.ok ? "ok" : "CORRUPT"}`, ...Object.entries(report).filter(([k]) => k !== "ok").map(([k, v]) => `  ${k.padEnd(20)} ${v}`)].join("\n");
  if (!report.ok) {
    const error = new CorruptError(`${path} failed verification: ${JSON.stringify(report)}`);
    if (json) process.stdout.write(`${JSON.stringify({ ok: false, exit: 4, index: path, report })}\n`);
    else process.stdout.write(`${text()}\n`);
    (error as CorruptError & { printed?: boolean }).printed = true;
    throw error;
  }
  output(json, { index: path, report }, text);
}

/** `quiver compact <index>`. */
export function cmdCompact({ positionals: [path], values }: Args): void {
  const threads = intFlag(values.threads, "threads", defaultThreads(), 1, 256);
  using index = openExisting(path, false);
  const before = plainStats(index);
  const start = performance.now();
  step(`compacting ${path}`, () => index.compact({ threads }));
  const after = plainStats(index);
  const seconds = (performance.now() - start) / 1000;
  output(values.json === true, { index: path, before: { slots_used: before.slots_used, tombstones: before.tombstones }, after: { slots_used: after.slots_used, tombstones: after.tombstones }, seconds }, () =>
    `compacted ${path} in ${seconds.toFixed(2)} s: ${before.slots_used} slots (${before.tombstones} tombstones) -> ${after.slots_used} slots (${after.tombstones} tombstones)`);
}

/** `quiver backup <index> <destination>`: the index through the core's backup, the sidecar copied. */
export function cmdBackup({ positionals: [path, destination], values }: Args): void {
  if (existsSync(destination)) throw new UsageError(`${destination} exists: choose a new path for the backup`);
  using index = openExisting(path, true);
  step(`backing up ${path}`, () => index.backup(destination));
  const docs = DocStore.load(path);
  if (docs.size > 0) docs.save(docsPath(destination));
  output(values.json === true, { index: path, backup: destination, size: index.size, sidecar: docs.size > 0 ? docsPath(destination) : null }, () =>
    `backed up ${path} (${index.size.toLocaleString("en-US")} vectors) to ${destination}`);
}

/** `quiver export <index> <output>`: every live vector in ascending key order. */
export function cmdExport({ positionals: [path, out], values }: Args): void {
  const format = choice<"npy" | "jsonl">(values, "format", ["npy", "jsonl"]) ?? (() => {
    const f = formatOf(out);
    if (f !== "npy" && f !== "jsonl") throw new UsageError(`export writes .npy or .jsonl, not ${f}`);
    return f;
  })();
  const keysPath = stringFlag(values, "keys");
  if (keysPath !== undefined && format !== "npy") throw new UsageError("--keys goes with a .npy export (JSON Lines carry their ids)");
  using index = openExisting(path, true);
  const docs = DocStore.load(path);
  using snapshot = index.snapshot();
  const keys = snapshot.keys().slice().sort();
  const progress = new Progress(`exporting ${path}`, keys.length);
  const d = index.dimensions;
  if (format === "npy") {
    const writer = new NpyWriter(out, d);
    const keyWriter = keysPath === undefined ? undefined : new NpyWriter(keysPath, 1, "u8");
    try {
      const chunk = 4096;
      for (let i = 0; i < keys.length; i += chunk) {
        const part = keys.subarray(i, Math.min(keys.length, i + chunk));
        const block = new Float32Array(part.length * d);
        part.forEach((key, j) => block.set(snapshot.get(key)!, j * d));
        writer.write(block);
        keyWriter?.write(part);
        progress.update(i + part.length);
      }
      writer.close();
      keyWriter?.close();
    } catch (error) {
      writer.abort();
      keyWriter?.abort();
      throw error;
    }
  } else {
    const writer = new JsonlWriter(out);
    try {
      keys.forEach((key, i) => {
        const entry = docs.get(key);
        writer.write({ id: entry?.id ?? key, vector: snapshot.get(key)!, metadata: entry?.metadata });
        if (i % 1024 === 0) progress.update(i);
      });
      writer.close();
    } catch (error) {
      writer.abort();
      throw error;
    }
  }
  progress.update(keys.length);
  progress.done();
  output(values.json === true, { index: path, output: out, format, count: keys.length, dimensions: d, keys: keysPath ?? null }, () =>
    `exported ${keys.length.toLocaleString("en-US")} vectors of ${d} dimensions from ${path} to ${out}`);
}

/** A seeded PRNG (mulberry32), for reproducible samples. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The core's distance, in JS: squared L2, 1 - dot, or 1 - cosine. */
function distanceFn(metric: string): (a: Float32Array, ao: number, b: Float32Array, bo: number, d: number) => number {
  if (metric === "l2") {
    return (a, ao, b, bo, d) => {
      let s = 0;
      for (let j = 0; j < d; j++) {
        const t = a[ao + j] - b[bo + j];
        s += t * t;
      }
      return s;
    };
  }
  return (a, ao, b, bo, d) => {
    let dot = 0, na = 0, nb = 0;
    for (let j = 0; j < d; j++) {
      dot += a[ao + j] * b[bo + j];
      na += a[ao + j] * a[ao + j];
      nb += b[bo + j] * b[bo + j];
    }
    return metric === "ip" ? 1 - dot : 1 - dot / Math.sqrt(na * nb || 1);
  };
}

/**
 * `quiver bench <index>`: samples vectors of the index as queries, finds each one's true k
 * nearest other vectors by brute force (the query's own key excluded from both sides), then
 * measures recall@k and single-thread QPS at each ef. Holds every vector in memory: O(n d).
 */
export function cmdBench({ positionals: [path], values }: Args): void {
  const json = values.json === true;
  const k = intFlag(values.k, "k", 10, 1, 1000);
  const seed = intFlag(values.seed, "seed", 1, 0);
  const efs = (stringFlag(values, "ef") ?? "10,20,40,80,160,320").split(",").map((e) => intFlag(e.trim(), "ef", 0, 1, 1 << 20));
  const svgPath = stringFlag(values, "svg") ?? `${path}.bench.svg`;
  using index = openExisting(path, true);
  const stats = plainStats(index);
  const metric = String(stats.metric);
  using snapshot = index.snapshot();
  const keys = snapshot.keys();
  const n = keys.length;
  if (n < k + 1) throw new InputError(`${path} holds ${n} vectors: bench needs more than k = ${k}`);
  const sampleSize = Math.min(intFlag(values.sample, "sample", 200, 1), n);
  const d = index.dimensions;
  const all = new Float32Array(n * d);
  const loading = new Progress(`reading ${path}`, n);
  keys.forEach((key, i) => {
    all.set(snapshot.get(key)!, i * d);
    if (i % 4096 === 0) loading.update(i);
  });
  loading.update(n);
  loading.done();
  // A partial Fisher-Yates shuffle picks the sample without replacement.
  const random = rng(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < sampleSize; i++) {
    const j = i + Math.floor(random() * (n - i));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const sample = order.slice(0, sampleSize);
  const distance = distanceFn(metric);
  const truth: Set<bigint>[] = [];
  const brute = new Progress("brute force", sampleSize, "queries");
  sample.forEach((q, s) => {
    const best: { dist: number; key: bigint }[] = [];
    for (let i = 0; i < n; i++) {
      if (i === q) continue;
      const dist = distance(all, q * d, all, i * d, d);
      if (best.length < k || dist < best[best.length - 1].dist) {
        best.push({ dist, key: keys[i] });
        best.sort((a, b) => a.dist - b.dist);
        if (best.length > k) best.pop();
      }
    }
    truth.push(new Set(best.map((b) => b.key)));
    brute.update(s + 1);
  });
  brute.done();
  const queries = sample.map((q) => all.subarray(q * d, (q + 1) * d));
  const points: { ef: number; recall: number; qps: number; ms: number }[] = [];
  const sweep = new Progress("ef sweep", efs.length, "ef values");
  efs.forEach((efRaw, e) => {
    const ef = Math.max(efRaw, k + 1);
    let hits = 0;
    let passes = 0;
    for (const query of queries.slice(0, 20)) snapshot.search(query, k + 1, { ef }); // warm-up
    const start = performance.now();
    // Repeat the pass until it has run 0.2 s (at most 20 passes) so fast settings time well.
    do {
      hits = 0;
      queries.forEach((query, s) => {
        const found = snapshot.search(query, k + 1, { ef });
        const self = keys[sample[s]];
        let taken = 0;
        for (const key of found.keys) {
          if (key === self) continue;
          if (taken++ >= k) break;
          if (truth[s].has(key)) hits++;
        }
      });
      passes++;
    } while (performance.now() - start < 200 && passes < 20);
    const seconds = (performance.now() - start) / 1000;
    const qps = (passes * sampleSize) / seconds;
    points.push({ ef, recall: hits / (sampleSize * k), qps, ms: 1000 / qps });
    sweep.update(e + 1);
  });
  sweep.done();
  const title = `quiver bench ${path}`;
  const subtitle = `${n.toLocaleString("en-US")} x ${d}, ${metric}, M = ${stats.m}, storage ${stats.storage}; ${sampleSize} of its own vectors as queries, k = ${k}, 1 thread`;
  writeFileSync(svgPath, recallQpsSvg(title, subtitle, [{ name: "quiver", dashed: false, points }], (s) => s.name, 1 / (sampleSize * k)));
  output(json, { index: path, size: n, dimensions: d, metric, k, sample: sampleSize, points, svg: svgPath }, () =>
    `${title}: ${subtitle}\n` +
    table(["ef", `recall@${k}`, "QPS", "ms/query"], points.map((p) => [p.ef, Number(p.recall.toFixed(4)), Math.round(p.qps), Number(p.ms.toFixed(3))])) +
    `\nplot: ${svgPath}`);
}
