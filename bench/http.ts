/**
 * examples/server.ts under a real HTTP load generator (wrk, Debian package `wrk`), on 127.0.0.1
 * only, each run bounded in time: requests per second and p50/p99 latency of POST /search at
 * 1, 16 and 64 connections, sync calls against async calls, idle and while a batch add runs.
 * Each scenario starts a fresh server (preloaded with --preload vectors), so runs are
 * independent. A benchmark, not a test; prints one JSON line per run with the load average.
 *
 *   bun bench/http.ts [--server-runtime bun|deno] [--seconds 4] [--preload 20000] [--build 100000]
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn, spawnSync } from "node:child_process";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};
const serverRuntime = flag("server-runtime", "bun");
const seconds = Number(flag("seconds", "4"));
const preload = Number(flag("preload", "20000"));
const buildCount = Number(flag("build", "100000"));
const d = 128;
const root = join(import.meta.dir, "..");
const bun = process.execPath;
const deno = flag("deno", process.env.DENO ?? "deno");
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

const dir = mkdtempSync(join(tmpdir(), "quiver-http-"));
const script = join(dir, "search.lua");
const query = Array.from({ length: d }, (_, i) => Number(Math.sin(i).toFixed(4)));
writeFileSync(script, `wrk.method = "POST"\nwrk.body = '${JSON.stringify({ vector: query, k: 10 })}'\nwrk.headers["Content-Type"] = "application/json"\n`);

async function startServer(sync: boolean): Promise<{ base: string; stop: () => void }> {
  const serverArgs = ["examples/server.ts", "--port", "0", "--dimensions", String(d), ...(sync ? ["--sync"] : [])];
  const child = serverRuntime === "bun"
    ? spawn(bun, serverArgs, { cwd: root, stdio: ["ignore", "pipe", "inherit"] })
    : spawn(deno, ["run", "--allow-ffi", "--allow-read", "--allow-env", "--allow-net=127.0.0.1", ...serverArgs], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  const base = await new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout!.on("data", (chunk) => {
      text += chunk;
      const m = /listening (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  return { base, stop: () => child.kill("SIGTERM") };
}

async function waitBuilt(base: string): Promise<void> {
  for (;;) {
    const stats = await (await fetch(`${base}/stats`)).json();
    if (stats.building === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function wrk(base: string, connections: number): { rps: number; p50_ms: number; p99_ms: number; requests: number; errors: string } {
  const threads = Math.min(2, connections);
  const out = spawnSync("wrk", ["-t", String(threads), "-c", String(connections), "-d", `${seconds}s`, "--timeout", "30s", "--latency", "-s", script, `${base}/search`], { encoding: "utf8" });
  const text = out.stdout;
  const ms = (s: string | undefined) => {
    if (!s) return NaN;
    const m = /([\d.]+)(us|ms|s)/.exec(s)!;
    const v = Number(m[1]);
    return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
  };
  const p50 = /50%\s+(\S+)/.exec(text)?.[1];
  const p99 = /99%\s+(\S+)/.exec(text)?.[1];
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]),
    p50_ms: Number(ms(p50).toFixed(3)),
    p99_ms: Number(ms(p99).toFixed(3)),
    requests: Number(/(\d+) requests in/.exec(text)?.[1]),
    errors: (/Socket errors:.*|Non-2xx.*/.exec(text)?.[0] ?? "none"),
  };
}

const backgrounds = args.includes("--only-background") ? [true] : args.includes("--only-idle") ? [false] : [false, true];
for (const background of backgrounds) {
  for (const sync of [false, true]) {
    for (const connections of [1, 16, 64]) {
      const server = await startServer(sync);
      try {
        await fetch(`${server.base}/build`, { method: "POST", body: JSON.stringify({ count: preload, from: 0, threads: 2 }) });
        await waitBuilt(server.base);
        if (background) {
          // Async: the answer comes once the server has generated the vectors (on its JS thread,
          // not Quiver's work) and started the add. Sync: the request blocks the server until
          // the add ends, so it is not awaited.
          const started = fetch(`${server.base}/build`, { method: "POST", body: JSON.stringify({ count: buildCount, from: 10_000_000, threads: 1 }) });
          if (sync) started.catch(() => {});
          else await started;
          await new Promise((r) => setTimeout(r, 500));
        }
        const loadBefore = load();
        const result = wrk(server.base, connections);
        // Whether the batch add still ran when the load ended (a sync server answers once it has).
        const stats = await (await fetch(`${server.base}/stats`)).json();
        console.log(JSON.stringify({ server: serverRuntime, mode: sync ? "sync" : "async", background: background ? `batch add of ${buildCount}` : "none", connections, seconds, ...result, still_building_after: stats.building > 0, size_after: stats.size, load: loadBefore }));
      } finally {
        server.stop();
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }
}
