// hnswlib-node 3.0.0 (hnswlib's C++ through N-API). Its addPoint and searchKnn take plain JS
// arrays, not typed arrays; queries are converted once before timing, build points per insert
// (that conversion is part of what a JS user pays to build). It has no parallel insert or batch
// search in its Node binding, so it builds on one thread and reports no batch figure.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Adapter, BatchResult, BuildParams } from "./adapter.ts";

const require = createRequire(import.meta.url);

interface HierarchicalNSW {
  initIndex(maxElements: number, m?: number, efConstruction?: number, randomSeed?: number): void;
  addPoint(point: number[], label: number): void;
  searchKnn(query: number[], k: number): { distances: number[]; neighbors: number[] };
  setEf(ef: number): void;
}

const SPACE = { l2: "l2", ip: "ip", cosine: "cosine" } as const;

/**
 * "hnswlib-node" for the addon as npm builds it (SSE distances: its binding.gyp sets no -march),
 * or "hnswlib-node (CXXFLAGS=...)" when scripts/setup-bench.sh rebuilt it with HNSWLIB_CXXFLAGS.
 */
function libraryName(): string {
  const flagsFile = join(dirname(require.resolve("hnswlib-node/package.json")), "build", "quiver-cxxflags");
  const flags = existsSync(flagsFile) ? readFileSync(flagsFile, "utf8").trim() : "";
  return flags ? `hnswlib-node (CXXFLAGS=${flags})` : "hnswlib-node";
}

/** Where scripts/setup-bench.sh builds the second, `-O3 -march=native` copy of hnswlib-node. */
export const NATIVE_DIR = join(import.meta.dir, ".hnswlib-native", "hnswlib-node");

/**
 * "npm": the addon in node_modules (as npm builds it, or as HNSWLIB_CXXFLAGS rebuilt it).
 * "native": the copy in NATIVE_DIR, always compiled with -O3 -march=native, reported as
 * "hnswlib-node-native", so both builds are series of one run.
 */
export function create(params: BuildParams, variant: "npm" | "native" = "npm"): Adapter {
  let addon: { HierarchicalNSW: new (space: string, dim: number) => HierarchicalNSW };
  if (variant === "native") {
    const path = join(NATIVE_DIR, "build", "Release", "addon.node");
    if (!existsSync(path)) throw new Error(`${path} is missing: run scripts/setup-bench.sh (builds hnswlib-node with -O3 -march=native there)`);
    addon = require(path);
  } else {
    addon = require("hnswlib-node");
  }
  const { HierarchicalNSW } = addon;
  const index = new HierarchicalNSW(SPACE[params.metric], params.dimensions);
  const d = params.dimensions;
  return {
    library: variant === "native" ? "hnswlib-node-native" : libraryName(),
    storage: "f32",
    buildThreads: 1,
    build(base: Float32Array, count: number) {
      index.initIndex(count, params.m, params.efConstruction, params.seed);
      for (let i = 0; i < count; i++) index.addPoint(Array.from(base.subarray(i * d, (i + 1) * d)), i);
    },
    setEf(ef: number) {
      index.setEf(ef);
    },
    prepareQueries(queries: Float32Array, count: number, dimensions: number) {
      return Array.from({ length: count }, (_, i) => Array.from(queries.subarray(i * dimensions, (i + 1) * dimensions)));
    },
    search(query: unknown, k: number, out: Float64Array, at: number) {
      const { neighbors } = index.searchKnn(query as number[], k);
      for (let i = 0; i < neighbors.length; i++) out[at + i] = neighbors[i];
      return neighbors.length;
    },
    searchBatch(): BatchResult | null {
      return null;
    },
    close() {
      // hnswlib-node frees its index when the object is garbage collected; nothing to call.
    },
  };
}
