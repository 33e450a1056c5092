/**
 * A vector search server on Quiver's async API: POST /add, POST /search, GET /stats as JSON,
 * plus POST /build (a background batch add of generated vectors, to show the server answering
 * while it builds). The same file runs under Bun and Deno, and listens on 127.0.0.1 only.
 *
 *   bun examples/server.ts [--port 8080] [--dimensions 128] [--sync]
 *   deno run --allow-ffi --allow-read --allow-net=127.0.0.1 examples/server.ts [same flags]
 *
 *   curl -s 127.0.0.1:8080/add -d '{"keys":[1,2],"vectors":[[0,1,...],[1,0,...]]}'
 *   curl -s 127.0.0.1:8080/search -d '{"vector":[0,1,...],"k":5}'
 *   curl -s 127.0.0.1:8080/stats
 *
 * `--sync` serves with the blocking calls instead (for bench/http.ts to compare). On start it
 * prints one line, `listening http://127.0.0.1:<port>` (port 0 picks a free one).
 */
import { asyncStart, asyncStats, configureAsync, Index, QuiverError } from "../mod.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const runtime: "bun" | "deno" = typeof g.Bun !== "undefined" ? "bun" : "deno";
const args: string[] = runtime === "bun" ? g.process.argv.slice(2) : g.Deno.args;
const option = (name: string, fallback: string) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};
const hostname = "127.0.0.1";
const port = Number(option("port", "8080"));
const dimensions = Number(option("dimensions", "128"));
const sync = args.includes("--sync");

const index = new Index({ dimensions });
// A server runs until stopped: keep the Workers (under Deno an idle one would exit, and its
// successor's start would stall the loop), and start them before serving.
configureAsync({ idleMs: Infinity });
if (!sync) await asyncStart();
let building = 0;

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body, (_k, v) => (typeof v === "bigint" ? Number(v) : v)), {
    status,
    headers: { "content-type": "application/json" },
  });

function flatten(vectors: number[][]): Float32Array {
  const out = new Float32Array(vectors.length * dimensions);
  vectors.forEach((v, i) => {
    if (!Array.isArray(v) || v.length !== dimensions) throw new RangeError(`vector ${i} must have ${dimensions} numbers`);
    out.set(v, i * dimensions);
  });
  return out;
}

async function add(body: { keys?: number[]; vectors?: number[][] }): Promise<Response> {
  if (!Array.isArray(body.keys) || !Array.isArray(body.vectors) || body.keys.length !== body.vectors.length) {
    return json({ error: "expected { keys: number[], vectors: number[][] } of the same length" }, 400);
  }
  const keys = BigUint64Array.from(body.keys, (k) => BigInt(k));
  const vectors = flatten(body.vectors);
  if (sync) index.add(keys, vectors);
  else await index.addAsync(keys, vectors);
  return json({ added: keys.length, size: index.size });
}

async function search(body: { vector?: number[]; k?: number; ef?: number }): Promise<Response> {
  if (!Array.isArray(body.vector)) return json({ error: "expected { vector: number[], k?: number }" }, 400);
  const query = Float32Array.from(body.vector);
  const k = body.k ?? 10;
  const result = sync ? index.search(query, k, { ef: body.ef }) : await index.searchAsync(query, k, { ef: body.ef });
  return json({ keys: Array.from(result.keys, Number), distances: Array.from(result.distances) });
}

/** Starts a batch add of `count` generated vectors in the background; answers at once. */
function build(body: { count?: number; from?: number; threads?: number }): Response {
  const count = body.count ?? 10_000;
  const from = body.from ?? 1_000_000;
  let seed = from;
  const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const vectors = new Float32Array(count * dimensions).map(random);
  const keys = BigUint64Array.from({ length: count }, (_, i) => BigInt(from + i));
  building++;
  const done = sync ? Promise.resolve(index.add(keys, vectors, { threads: body.threads ?? 1 })) : index.addAsync(keys, vectors, { threads: body.threads ?? 1 });
  done.catch((error) => console.error("build failed:", error)).finally(() => building--);
  return json({ building: count });
}

async function handle(request: Request): Promise<Response> {
  const url = new URL(request.url);
  try {
    if (request.method === "GET" && url.pathname === "/stats") {
      const s = index.stats();
      return json({ size: s.size, capacity: s.capacity, dimensions: s.dimensions, building, mode: sync ? "sync" : "async", async: asyncStats() });
    }
    if (request.method === "POST" && url.pathname === "/add") return await add(await request.json());
    if (request.method === "POST" && url.pathname === "/search") return await search(await request.json());
    if (request.method === "POST" && url.pathname === "/build") return build(await request.json());
    return json({ error: `no route ${request.method} ${url.pathname}` }, 404);
  } catch (error) {
    // Quiver's typed errors (bad vector, bad k) and bad JSON are the client's; the rest ours.
    const client = error instanceof QuiverError || error instanceof SyntaxError || error instanceof RangeError;
    return json({ error: String((error as Error)?.message ?? error), code: (error as QuiverError).code }, client ? 400 : 500);
  }
}

function listening(actual: number): void {
  console.log(`listening http://${hostname}:${actual}`);
}

if (runtime === "bun") {
  const server = g.Bun.serve({ hostname, port, fetch: handle });
  listening(server.port);
} else {
  g.Deno.serve({ hostname, port, onListen: ({ port }: { port: number }) => listening(port) }, handle);
}
