/**
 * The npm platform packages (`@quiverdb/<os>-<cpu>[-<libc>]`), each imported by a literal
 * specifier so that bundlers (`bun build`, `bun build --compile`) follow the one that is
 * installed and carry its library along. A package that is not installed fails its dynamic
 * import, which the loader catches: nothing here is a static import of something that may be
 * absent. Imports ../version.ts.
 *
 * Each package's entry point exports the library's path as its default export: under Bun
 * through a `with { type: "file" }` import (so bundles embed or copy the file), elsewhere from
 * its own import.meta.url.
 */
import { version } from "../version.ts";

/** Every platform a package is published for, in the order of the README's table. */
export const platforms = [
  "linux-x64-gnu",
  "linux-arm64-gnu",
  "linux-x64-musl",
  "darwin-x64",
  "darwin-arm64",
  "win32-x64",
] as const;

/** A published platform's name, e.g. "linux-x64-gnu". */
export type Platform = (typeof platforms)[number];

/** Whether `key` names a platform a package is published for. */
export function isPlatform(key: string): key is Platform {
  return (platforms as readonly string[]).includes(key);
}

/** A package lookup: the library's path, or why there is none. */
export type Lookup = { path: string; missing?: undefined } | { path?: undefined; missing: string };

/**
 * The library path the installed package `@quiverdb/<platform>` exports, or why there is none
 * (not installed, or a package without the export). Cost: one module load, the first time.
 */
export async function fromPackage(platform: Platform): Promise<Lookup> {
  // The specifiers must stay literals (see above), and each import must sit inside this try:
  // Bun's bundler then leaves a package that is not installed to fail at run time, here,
  // instead of failing the user's build.
  let module: { default?: unknown };
  try {
    // @ts-ignore: optional dependency
    if (platform === "linux-x64-gnu") module = await import("@quiverdb/linux-x64-gnu");
    // @ts-ignore: optional dependency
    else if (platform === "linux-arm64-gnu") module = await import("@quiverdb/linux-arm64-gnu");
    // @ts-ignore: optional dependency
    else if (platform === "linux-x64-musl") module = await import("@quiverdb/linux-x64-musl");
    // @ts-ignore: optional dependency
    else if (platform === "darwin-x64") module = await import("@quiverdb/darwin-x64");
    // @ts-ignore: optional dependency
    else if (platform === "darwin-arm64") module = await import("@quiverdb/darwin-arm64");
    // @ts-ignore: optional dependency
    else module = await import("@quiverdb/win32-x64");
  } catch (error) {
    return { missing: `not installed (${firstLine(error)})` };
  }
  return pathOf(module);
}

/**
 * Deno, when Quiver itself was loaded over HTTP (JSR or a URL import): the same package by an
 * `npm:` specifier at Quiver's own version. Deno fetches it into its cache, or takes it from a
 * local node_modules when the project has `"nodeModulesDir": "manual"`. Built at run time, not
 * a literal, so that type-checking a project does not fetch the packages of every platform.
 */
export async function fromNpm(platform: Platform): Promise<Lookup> {
  const specifier = `npm:@quiverdb/${platform}@${version}`;
  let module: { default?: unknown };
  try {
    module = await import(specifier);
  } catch (error) {
    return { missing: `${specifier} did not load (${firstLine(error)})` };
  }
  return pathOf(module);
}

function pathOf(module: { default?: unknown }): Lookup {
  const path = module.default;
  if (typeof path !== "string" || path.length === 0) return { missing: "its default export is not the library's path" };
  return { path };
}

/** The first line of an error's message. */
export function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0];
}
