/**
 * src/runtime/: everything that differs between Bun and Deno, behind one small interface
 * (native.ts). loader.ts finds the library and picks the adapter; bun.ts and deno.ts are the
 * adapters; host.ts names the platform; packages.ts imports the npm platform packages. Files
 * here import only each other, ../ffi.gen.ts and ../version.ts, and only loader.ts imports an adapter; the rest
 * of Quiver imports loader.ts and native.ts (tests/packaging.test.ts checks both rules).
 *
 * The library is looked for, in order:
 *   1. `QUIVER_LIB`, a path (only it: a set variable that does not load is an error);
 *   2. the npm platform package `@quiverdb/<os>-<cpu>[-<libc>]` (an optional dependency of
 *      `quiverdb`), also by `npm:` specifier when Deno loaded Quiver over HTTP (JSR);
 *   3. under Bun, the library that `bun build --compile` embedded (or `--outdir` copied);
 *   4. a local build, zig-out/lib beside this checkout (`QUIVER_DEBUG=1`: its Debug variant).
 * The first that opens wins; when none does, LibraryNotFoundError names the platform and every
 * candidate with why it failed.
 */
import { fileURLToPath } from "node:url";
import { detectHost, type Host, platformKeys } from "./host.ts";
import { libraryFileName, type Native, type Opener } from "./native.ts";
import { firstLine, fromNpm, fromPackage, isPlatform } from "./packages.ts";
import { version } from "../version.ts";

/** No candidate gave a library that opens. `tried` lists each one and why it failed. */
export class LibraryNotFoundError extends Error {
  /** Stable: "LIBRARY_NOT_FOUND". */
  readonly code: string = "LIBRARY_NOT_FOUND";
  /** The platform looked for, e.g. "linux-x64-gnu". */
  readonly platform: string;
  readonly tried: readonly string[];
  constructor(platform: string, tried: readonly string[], hint: string) {
    super(
      `Quiver's native library for ${platform} was not found. Tried:\n` +
        tried.map((line) => `  - ${line}`).join("\n") + `\n${hint}`,
    );
    this.name = "LibraryNotFoundError";
    this.platform = platform;
    this.tried = tried;
  }
}

let loaded: Native | undefined;

/**
 * Loads the library once per process (per Worker). Thread safety: per isolate; call it before
 * anything else (mod.ts does, at import). Cost: one dlopen (and failed lookups before it).
 */
export async function loadNative(): Promise<Native> {
  if (loaded !== undefined) return loaded;
  const host = detectHost();
  const open: Opener = host.runtime === "bun"
    ? (await import("./bun.ts")).openBun
    : (await import("./deno.ts")).openDeno;
  loaded = await locate(host, open);
  return loaded;
}

/** The loaded library. Throws if nothing has loaded it (import Quiver through mod.ts). */
export function native(): Native {
  if (loaded === undefined) throw new Error("Quiver's native library is not loaded: import it from mod.ts");
  return loaded;
}

async function locate(host: Host, open: Opener): Promise<Native> {
  const tried: string[] = [];
  const platform = platformKeys(host)[0];
  const attempt = (source: string, path: string): Native | undefined => {
    try {
      return open(path, source);
    } catch (error) {
      tried.push(`${source}: ${path} (${firstLine(error)})`);
      return undefined;
    }
  };

  const override = host.env("QUIVER_LIB");
  if (override !== undefined) {
    const lib = attempt("QUIVER_LIB", override);
    if (lib) return lib;
    throw new LibraryNotFoundError(platform, tried, "QUIVER_LIB names a file that does not open; unset it to search.");
  }
  const debug = host.env("QUIVER_DEBUG") === "1";
  const local = localBuild(host.os, debug);
  if (debug) {
    const lib = local === undefined ? undefined : attempt("local Debug build (QUIVER_DEBUG=1)", local);
    if (lib) return lib;
    throw new LibraryNotFoundError(platform, tried, "QUIVER_DEBUG=1 wants the Debug build of this checkout: run `zig build`.");
  }

  const overHttp = /^https?:/.test(import.meta.url);
  const byNpm = overHttp && host.runtime === "deno";
  for (const key of platformKeys(host)) {
    const name = byNpm ? `npm:@quiverdb/${key}@${version}` : `@quiverdb/${key}`;
    if (!isPlatform(key)) {
      tried.push(`${name}: no package is published for this platform`);
      continue;
    }
    const found = await (byNpm ? fromNpm(key) : fromPackage(key));
    if (found.path === undefined) {
      tried.push(`${name}: ${found.missing}`);
      continue;
    }
    const lib = attempt(name, bundled(found.path));
    if (lib) return lib;
  }
  if (host.runtime === "bun") {
    const { embeddedLocal } = await import("./bun.ts");
    const found = await embeddedLocal(host.os);
    const lib = found.path === undefined ? undefined : attempt("embedded local build", bundled(found.path));
    if (found.missing !== undefined) tried.push(`embedded local build: ${found.missing}`);
    if (lib) return lib;
  }
  if (local !== undefined) {
    const lib = attempt("local build", local);
    if (lib) return lib;
  }
  const denied = host.envDenied ? " (Deno: QUIVER_LIB was not read: it needs --allow-env)" : "";
  throw new LibraryNotFoundError(
    platform,
    tried,
    `Install quiverdb with its optional dependencies (${`@quiverdb/${platform}`}), set QUIVER_LIB to ` +
      `the library's path${denied}, or build it from a checkout with \`zig build\`.`,
  );
}

/** zig-out/lib of the checkout this file is in, when it is a file (not loaded over HTTP). */
function localBuild(os: string, debug: boolean): string | undefined {
  if (!import.meta.url.startsWith("file:")) return undefined;
  return fileURLToPath(new URL(`../../zig-out/lib/${libraryFileName(os, debug)}`, import.meta.url));
}

/**
 * A path Bun's file import gave: absolute from source or inside a compiled binary (/$bunfs/...),
 * but relative to the bundle after `bun build --outdir`: resolve that against the bundle, not
 * against the working directory.
 */
function bundled(path: string): string {
  if (!/^\.\.?[\\/]/.test(path) || !import.meta.url.startsWith("file:")) return path;
  return fileURLToPath(new URL(path, import.meta.url));
}
