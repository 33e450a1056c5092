/** One entry for every reader: the format from the file name (or given). */
import { FormatError } from "./errors.ts";
import { openHdf5 } from "./hdf5.ts";
import { openIdx } from "./idx.ts";
import { openJsonl } from "./jsonl.ts";
import { openNpy } from "./npy.ts";
import type { VectorSource } from "./types.ts";
import { openVecs } from "./vecs.ts";

export type FormatName = "npy" | "fvecs" | "bvecs" | "ivecs" | "jsonl" | "hdf5" | "idx";

export interface OpenVectorsOptions {
  /** Overrides the format the file name implies. */
  format?: FormatName;
  /** JSON Lines: the id field (default "id"). */
  idField?: string;
  /** JSON Lines: the vector field (default "vector"). */
  vectorField?: string;
  /** JSON Lines: the metadata field (default "metadata"). */
  metadataField?: string;
  /** HDF5: the dataset (default "train"). */
  dataset?: string;
}

/**
 * The format a file name implies: .npy, .fvecs, .bvecs, .ivecs, .jsonl/.ndjson, .hdf5/.h5,
 * idx (`*-idx3-ubyte`, `.idx`, optionally `.gz`). FormatError UNKNOWN_FORMAT otherwise.
 */
export function formatOf(path: string): FormatName {
  const name = path.toLowerCase();
  if (name.endsWith(".npy")) return "npy";
  if (name.endsWith(".fvecs")) return "fvecs";
  if (name.endsWith(".bvecs")) return "bvecs";
  if (name.endsWith(".ivecs")) return "ivecs";
  if (name.endsWith(".jsonl") || name.endsWith(".ndjson")) return "jsonl";
  if (name.endsWith(".hdf5") || name.endsWith(".h5")) return "hdf5";
  if (/(-idx\d-ubyte|\.idx)(\.gz)?$/.test(name)) return "idx";
  throw new FormatError(
    "UNKNOWN_FORMAT",
    path,
    "unknown format: name the file .npy, .fvecs, .bvecs, .ivecs, .jsonl, .hdf5 or *-idx3-ubyte(.gz), or pass the format",
  );
}

/**
 * Opens any supported vector file as a VectorSource. Cost: that of the format's open (O(1)
 * for the binary formats, the first record for JSON Lines, the whole file for idx).
 */
export function openVectors(path: string, options: OpenVectorsOptions = {}): Promise<VectorSource> {
  const format = options.format ?? formatOf(path);
  switch (format) {
    case "npy": return openNpy(path);
    case "fvecs": case "bvecs": case "ivecs": return openVecs(path, format);
    case "jsonl": return openJsonl(path, options);
    case "hdf5": return openHdf5(path, { dataset: options.dataset });
    case "idx": return openIdx(path);
    default: throw new FormatError("UNKNOWN_FORMAT", path, `unknown format "${String(format)}"`);
  }
}

/** Reads a whole file of any supported format into one matrix. O(n * d) memory and time. */
export async function readVectors(path: string, options: OpenVectorsOptions = {}) {
  using source = await openVectors(path, options);
  const parts: Float32Array[] = [];
  let count = 0;
  for await (const batch of source.batches()) {
    parts.push(batch.vectors);
    count += batch.count;
  }
  const data = new Float32Array(count * source.dimensions);
  let at = 0;
  for (const p of parts) data.set(p, (at += p.length) - p.length);
  return { data, count, dimensions: source.dimensions };
}
