// Python peers (FAISS, ScaNN) through bench/peers/py/runner.py, one Python process per library in
// the project's virtual environment (bench/.venv, made by scripts/setup-bench.sh). Control goes as
// JSON lines over the child's stdin/stdout; vectors go as raw float32 files under .cache/bench/tmp
// and ids come back as a raw uint32 file. Build and search are timed inside Python, around a loop
// of one-query calls on one thread (best of --runs passes), so the bridge is not charged to the
// library; recall is counted here against the same ground truth as every other peer.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CACHE_DIR, REPO_ROOT } from "../data.ts";
import type { BuildParams, ExternalAdapter, SweepPoint } from "./adapter.ts";

export const PYTHON = join(REPO_ROOT, "bench", ".venv", "bin", "python");
const RUNNER = join(REPO_ROOT, "bench", "peers", "py", "runner.py");
const MISSING = 0xffffffff;
/** ScaNN's exact-reorder budgets tried at every leaves_to_search: run.ts keeps the points no other
 * point beats on both recall and QPS (the frontier ann-benchmarks plots for its pairs). */
export const SCANN_REORDER = [30, 60, 120];

type Reply = { ok: boolean; error?: string; [key: string]: unknown };

export async function create(name: "faiss-hnsw" | "faiss-hnsw-sq8" | "scann", params: BuildParams): Promise<ExternalAdapter> {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run scripts/setup-bench.sh (it creates bench/.venv with faiss-cpu and scann)`);
  // Passive OpenMP waits: FAISS build threads must not spin on the second core during the timed passes.
  const child = Bun.spawn([PYTHON, RUNNER, name], {
    stdin: "pipe", stdout: "pipe", stderr: "inherit", cwd: REPO_ROOT, env: { ...process.env, OMP_WAIT_POLICY: "PASSIVE" },
  });
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  const readLine = async (): Promise<string> => {
    for (;;) {
      const nl = pending.indexOf("\n");
      if (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error(`${name}: the Python runner exited (code ${await child.exited}); see its messages above`);
      pending += decoder.decode(value, { stream: true });
    }
  };
  const call = async (request: object): Promise<Reply> => {
    if (Object.keys(request).length) {
      child.stdin.write(`${JSON.stringify(request)}\n`);
      child.stdin.flush();
    }
    const reply = JSON.parse(await readLine()) as Reply;
    if (!reply.ok) throw new Error(`${name}: ${reply.error}`);
    return reply;
  };
  const hello = await call({}); // The runner announces itself once its library has imported.
  const tmp = join(CACHE_DIR, "tmp");
  mkdirSync(tmp, { recursive: true });
  const baseFile = join(tmp, `py-${process.pid}.base.f32`);
  const queryFile = join(tmp, `py-${process.pid}.query.f32`);
  const outFile = join(tmp, `py-${process.pid}.ids.u32`);
  const cleanup = () => { for (const f of [baseFile, queryFile, outFile]) rmSync(f, { force: true }); };
  process.on("exit", cleanup);
  let buildThreads = params.threads;
  let queryCount = 0;
  return {
    external: true,
    library: name,
    version: String(hello.version),
    storage: name === "faiss-hnsw-sq8" ? "sq8" : name === "scann" ? "ah4+f32" : "f32",
    get buildThreads() { return buildThreads; },
    async build(base: Float32Array, count: number) {
      const d = params.dimensions;
      const view = base.subarray(0, count * d);
      writeFileSync(baseFile, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
      const r = await call({
        op: "build", base: baseFile, count, dimensions: d, metric: params.metric, m: params.m,
        efConstruction: params.efConstruction, threads: params.threads, seed: params.seed,
      });
      rmSync(baseFile, { force: true });
      buildThreads = Number(r.build_threads);
      return { seconds: Number(r.build_s), rssMb: Number(r.rss_mb) };
    },
    prepare(queries: Float32Array, count: number) {
      const view = queries.subarray(0, count * params.dimensions);
      writeFileSync(queryFile, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
      queryCount = count;
    },
    async sweep(ef: number, k: number, runs: number, clock: "wall" | "cpu") {
      const points: SweepPoint[] = [];
      for (const reorder of name === "scann" ? SCANN_REORDER : [0]) {
        const r = await call({
          op: "sweep", queries: queryFile, count: queryCount, dimensions: params.dimensions, k, ef, reorder, runs,
          warm: 100, clock, out: outFile,
        });
        const raw = readFileSync(outFile);
        const all = new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
        const ids = new Float64Array(queryCount * k);
        for (let i = 0; i < queryCount * k; i++) ids[i] = all[i] === MISSING ? -1 : all[i];
        const counts = all.slice(queryCount * k, queryCount * k + queryCount);
        points.push({
          storage: name === "scann" ? `ah4+reorder${reorder}` : name === "faiss-hnsw-sq8" ? "sq8" : "f32",
          seconds: Number(r.seconds), cpuShare: Number(r.cpu_share), ids, counts,
        });
      }
      return points;
    },
    async close() {
      await call({ op: "quit" }).catch(() => {});
      await child.exited;
      cleanup();
    },
  };
}
