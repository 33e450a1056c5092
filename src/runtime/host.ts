/**
 * The host this process runs on, in npm's vocabulary (os, cpu, libc), read without any permission
 * but Deno's env permission, and only for the variable asked for. Imports nothing.
 */

/** One of the platforms Quiver ships a package for, or a platform it does not. */
export interface Host {
  readonly runtime: "bun" | "deno";
  /** `process.platform` names: "linux", "darwin", "win32", ... */
  readonly os: string;
  /** `process.arch` names: "x64", "arm64", ... */
  readonly cpu: string;
  /** Linux only: the C library the runtime itself was built against. */
  readonly libc: "gnu" | "musl" | undefined;
  /** Reads an environment variable; undefined when unset or when Deno may not read it. */
  env(name: string): string | undefined;
  /** Whether `env` could not read a variable for lack of Deno's --allow-env. */
  readonly envDenied: boolean;
}

interface DenoHost {
  build: { os: string; arch: string; env?: string };
  env: { get(name: string): string | undefined };
  permissions: { querySync?(descriptor: { name: "env"; variable: string }): { state: string } };
}

interface BunProcess {
  platform: string;
  arch: string;
  env: Record<string, string | undefined>;
  report?: { getReport?(): { header?: { glibcVersionRuntime?: string } } };
}

const denoCpu: Record<string, string> = { x86_64: "x64", aarch64: "arm64" };
const denoOs: Record<string, string> = { windows: "win32" };

/** Describes this process. Cost: a few property reads (Bun: one process report on Linux). */
export function detectHost(): Host {
  const g = globalThis as { Bun?: unknown; Deno?: DenoHost; process?: BunProcess };
  if (typeof g.Bun !== "undefined" && g.process !== undefined) return bunHost(g.process);
  if (g.Deno !== undefined) return denoHost(g.Deno);
  throw new Error("Quiver runs on Bun or Deno: no FFI is available in this runtime");
}

function bunHost(process: BunProcess): Host {
  let libc: Host["libc"];
  if (process.platform === "linux") {
    // A glibc Bun reports the glibc it runs on; a musl Bun reports none.
    const report = process.report?.getReport?.();
    libc = report?.header?.glibcVersionRuntime ? "gnu" : "musl";
  }
  return {
    runtime: "bun",
    os: process.platform,
    cpu: process.arch,
    libc,
    env: (name) => process.env[name] || undefined,
    envDenied: false,
  };
}

function denoHost(deno: DenoHost): Host {
  const os = denoOs[deno.build.os] ?? deno.build.os;
  const libc = os === "linux" ? (deno.build.env === "musl" ? "musl" : "gnu") : undefined;
  let denied = false;
  return {
    runtime: "deno",
    os,
    cpu: denoCpu[deno.build.arch] ?? deno.build.arch,
    libc,
    env(name: string): string | undefined {
      // Ask first: without --allow-env a plain read would prompt on a terminal or throw.
      const state = deno.permissions.querySync?.({ name: "env", variable: name }).state ?? "granted";
      if (state !== "granted") {
        denied = true;
        return undefined;
      }
      return deno.env.get(name) || undefined;
    },
    get envDenied(): boolean {
      return denied;
    },
  };
}

/** The npm platform packages that could serve this host, best first (e.g. "linux-x64-gnu"). */
export function platformKeys(host: Host): string[] {
  const base = `${host.os}-${host.cpu}`;
  if (host.os !== "linux") return [base];
  // The other libc's package comes second: a system may carry both (gcompat), and optional
  // dependencies install only the matching one anyway.
  return host.libc === "musl" ? [`${base}-musl`, `${base}-gnu`] : [`${base}-gnu`, `${base}-musl`];
}
