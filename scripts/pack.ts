/**
 * Builds and packs every npm package into dist/pack/ (run it as `bash scripts/pack.sh`):
 *   - quiverdb-<version>.tgz: mod.ts and src/ compiled by tsc to JavaScript + declarations;
 *   - quiverdb-<platform>-<version>.tgz for each platform: the native library cross-compiled by
 *     Zig (release, stripped), selected at install time by its os/cpu/libc fields.
 * A platform whose library does not compile yet (see `status` below) is skipped with the
 * compiler's first errors; everything else failing fails the script.
 *
 *   bun scripts/pack.ts [--platforms=all|host|linux-x64-gnu,...] [--out=dist/pack]
 *
 * Prints one line per package with its packed size, then the summary line
 * "pack: N packed, M skipped".
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const version: string = manifest.version;

/** One npm platform package and the Zig target that builds its library. */
interface Target {
  platform: string;
  /** The Zig target triple; glibc targets carry the floor (x86_64-linux-gnu.2.17). */
  triple: string;
  /** The CPU floor: x86-64-v2 as for the host build (wider kernels are chosen at run time). */
  cpu?: string;
  os: string;
  arch: string;
  libc?: "glibc" | "musl";
  /** The library's file name and where `zig build --prefix` installs it. */
  file: string;
  installed: string;
  /** The highest GLIBC_ symbol version the library may need. */
  glibcFloor?: string;
  description: string;
}

export const glibcFloor = "2.17";

export const targets: Target[] = [
  {
    platform: "linux-x64-gnu", triple: `x86_64-linux-gnu.${glibcFloor}`, cpu: "x86_64_v2", os: "linux", arch: "x64",
    libc: "glibc", file: "libquiver.so", installed: "lib/libquiver.so", glibcFloor, description: `Linux x64, glibc ${glibcFloor}+`,
  },
  {
    platform: "linux-arm64-gnu", triple: `aarch64-linux-gnu.${glibcFloor}`, os: "linux", arch: "arm64",
    libc: "glibc", file: "libquiver.so", installed: "lib/libquiver.so", glibcFloor, description: `Linux arm64, glibc ${glibcFloor}+`,
  },
  {
    platform: "linux-x64-musl", triple: "x86_64-linux-musl", cpu: "x86_64_v2", os: "linux", arch: "x64",
    libc: "musl", file: "libquiver.so", installed: "lib/libquiver.so", description: "Linux x64, musl (Alpine)",
  },
  {
    platform: "darwin-x64", triple: "x86_64-macos", cpu: "x86_64_v2", os: "darwin", arch: "x64",
    file: "libquiver.dylib", installed: "lib/libquiver.dylib", description: "macOS x64",
  },
  {
    platform: "darwin-arm64", triple: "aarch64-macos", os: "darwin", arch: "arm64",
    file: "libquiver.dylib", installed: "lib/libquiver.dylib", description: "macOS arm64",
  },
  {
    platform: "win32-x64", triple: "x86_64-windows-gnu", cpu: "x86_64_v2", os: "win32", arch: "x64",
    file: "quiver.dll", installed: "bin/quiver.dll", description: "Windows x64",
  },
];

function arg(name: string, fallback: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}

function run(command: string[], cwd = root): { code: number; out: string } {
  const proc = Bun.spawnSync(command, { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: proc.exitCode ?? 1, out: proc.stdout.toString() + proc.stderr.toString() };
}

function must(command: string[], cwd = root): string {
  const { code, out } = run(command, cwd);
  if (code !== 0) throw new Error(`pack: \`${command.join(" ")}\` failed (${code}):\n${out}`);
  return out;
}

/** `npm pack` of a staged folder into `out`; returns the tarball's path. */
function npmPack(stage: string, out: string): string {
  const name = must(["npm", "pack", "--silent", "--pack-destination", out], stage).trim().split("\n").pop()!;
  const tarball = join(out, name);
  if (!existsSync(tarball)) throw new Error(`pack: npm pack did not write ${tarball}`);
  return tarball;
}

/** A path as printed: relative inside the checkout, absolute outside it. */
function shown(path: string): string {
  const rel = relative(root, path);
  return rel.startsWith("..") ? path : rel;
}

function kib(path: string): string {
  return `${(statSync(path).size / 1024).toFixed(1)} KiB`;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

const common = {
  version,
  license: manifest.license,
  author: manifest.author,
  repository: manifest.repository,
  homepage: manifest.homepage,
};

function packMain(stages: string, out: string): string {
  const js = join(root, "dist", "js");
  rmSync(js, { recursive: true, force: true });
  must([join(root, "node_modules", ".bin", "tsc"), "-p", join(root, "tsconfig.build.json")]);
  const stage = join(stages, "quiverdb");
  mkdirSync(stage, { recursive: true });
  for (const file of walk(js)) {
    const target = join(stage, relative(js, file));
    mkdirSync(dirname(target), { recursive: true });
    let text = readFileSync(file, "utf8");
    // Declarations keep the sources' `.ts` specifiers; in the package they are `.js` files.
    if (file.endsWith(".d.ts")) text = text.replace(/(from\s+"\.{1,2}\/[^"]*)\.ts"/g, '$1.js"');
    writeFileSync(target, text);
  }
  for (const file of ["LICENSE", "README.md", "CHANGELOG.md"]) copyFileSync(join(root, file), join(stage, file));
  const optionalDependencies = Object.fromEntries(targets.map((t) => [`@quiverdb/${t.platform}`, version]));
  writeFileSync(join(stage, "package.json"), JSON.stringify({
    name: "quiverdb",
    description: manifest.description,
    ...common,
    keywords: manifest.keywords,
    type: "module",
    main: "./mod.js",
    types: "./mod.d.ts",
    exports: {
      ".": { types: "./mod.d.ts", default: "./mod.js" },
      "./formats": { types: "./formats.d.ts", default: "./formats.js" },
      "./langchain": { types: "./langchain.d.ts", default: "./langchain.js" },
      "./package.json": "./package.json",
    },
    bin: { quiver: "./cli/quiver.js" },
    files: [
      "mod.js", "mod.d.ts", "formats.js", "formats.d.ts", "langchain.js", "langchain.d.ts",
      "src/", "cli/", "bench/svg.js", "LICENSE", "README.md", "CHANGELOG.md",
    ],
    engines: { bun: ">=1.1.0" },
    dependencies: manifest.dependencies,
    peerDependencies: manifest.peerDependencies,
    peerDependenciesMeta: manifest.peerDependenciesMeta,
    optionalDependencies,
  }, null, 2) + "\n");
  return npmPack(stage, out);
}

/** The GLIBC_x.y versions the library's dynamic symbols need, from readelf. */
function glibcVersions(library: string): string[] {
  const text = must(["readelf", "--dyn-syms", "-V", "-W", library]);
  return [...new Set(text.match(/GLIBC_[0-9.]+/g) ?? [])].map((v) => v.slice(6));
}

function newer(a: string, b: string): boolean {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return false;
}

/** Builds one platform's library; undefined and a message when it does not compile. */
function build(t: Target): { library?: string; skipped?: string } {
  const zig = process.env.ZIG;
  if (!zig) throw new Error("pack: $ZIG is not set (run through scripts/pack.sh)");
  const prefix = join(root, "dist", "native", t.platform);
  rmSync(prefix, { recursive: true, force: true });
  const command = [zig, "build", "lib", `-Dtarget=${t.triple}`, "-Dstrip", "--prefix", prefix, "--summary", "none"];
  if (t.cpu) command.push(`-Dcpu=${t.cpu}`);
  const { code, out } = run(command);
  if (code !== 0) {
    const errors = [...new Set(out.split("\n").filter((l) => l.includes("error:") && !l.includes("the following")))];
    return { skipped: `${errors.length} compile error(s), first: ${errors.slice(0, 3).map((e) => e.trim()).join(" | ")}` };
  }
  const library = join(prefix, t.installed);
  if (!existsSync(library)) throw new Error(`pack: zig build for ${t.platform} left no ${t.installed}`);
  if (t.glibcFloor) {
    const needed = glibcVersions(library);
    const above = needed.filter((v) => newer(v, t.glibcFloor!));
    if (above.length > 0) throw new Error(`pack: ${t.platform} needs GLIBC ${above.join(", ")}, above the floor ${t.glibcFloor}`);
    if (needed.length === 0) throw new Error(`pack: readelf found no GLIBC_ versions in ${library} (is it a glibc build?)`);
  }
  return { library };
}

function packPlatform(t: Target, library: string, stages: string, out: string): string {
  const stage = join(stages, t.platform);
  mkdirSync(stage, { recursive: true });
  copyFileSync(library, join(stage, t.file));
  copyFileSync(join(root, "LICENSE"), join(stage, "LICENSE"));
  // Under Bun a file import, so that `bun build` embeds (--compile) or copies (--outdir) the
  // library; elsewhere (Deno, Node) the path beside this module.
  writeFileSync(join(stage, "bun.js"), [
    `// The path of Quiver's native library for ${t.description}; bundlers carry the file along.`,
    `import path from "./${t.file}" with { type: "file" };`,
    "export default path;",
    "",
  ].join("\n"));
  writeFileSync(join(stage, "index.js"), [
    `// The path of Quiver's native library for ${t.description}.`,
    `import { fileURLToPath } from "node:url";`,
    `export default fileURLToPath(new URL("./${t.file}", import.meta.url));`,
    "",
  ].join("\n"));
  writeFileSync(join(stage, "index.d.ts"), "/** The native library's path. */\ndeclare const path: string;\nexport default path;\n");
  writeFileSync(join(stage, "README.md"), `# @quiverdb/${t.platform}\n\nThe native library of [quiverdb](https://www.npmjs.com/package/quiverdb) for ${t.description}. Install \`quiverdb\`, which depends on this package when it fits the machine.\n`);
  writeFileSync(join(stage, "package.json"), JSON.stringify({
    name: `@quiverdb/${t.platform}`,
    description: `Quiver's native library for ${t.description}`,
    ...common,
    type: "module",
    os: [t.os],
    cpu: [t.arch],
    ...(t.libc ? { libc: [t.libc] } : {}),
    exports: { ".": { types: "./index.d.ts", bun: "./bun.js", default: "./index.js" }, "./package.json": "./package.json" },
    files: [t.file, "bun.js", "index.js", "index.d.ts", "LICENSE", "README.md"],
  }, null, 2) + "\n");
  return npmPack(stage, out);
}

function hostPlatform(): string {
  const libc = process.platform === "linux" ? "-gnu" : "";
  return `${process.platform}-${process.arch}${libc}`;
}

if (import.meta.main) {
  const out = resolve(root, arg("out", "dist/pack"));
  const wanted = arg("platforms", "all");
  const chosen = wanted === "all"
    ? targets
    : targets.filter((t) => (wanted === "host" ? [hostPlatform()] : wanted.split(",")).includes(t.platform));
  if (chosen.length === 0) throw new Error(`pack: no platform matches --platforms=${wanted}`);
  const stages = join(root, "dist", "stage");
  rmSync(stages, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });

  let packed = 0;
  let skipped = 0;
  const main = packMain(stages, out);
  console.log(`pack: ${shown(main)} ${kib(main)}`);
  packed++;
  for (const t of chosen) {
    const result = build(t);
    if (result.library === undefined) {
      console.log(`pack: skipped @quiverdb/${t.platform} (${t.triple}): ${result.skipped}`);
      skipped++;
      continue;
    }
    const tarball = packPlatform(t, result.library, stages, out);
    const floor = t.glibcFloor ? `, needs GLIBC <= ${t.glibcFloor}: ${glibcVersions(result.library).sort((a, b) => (newer(a, b) ? 1 : -1)).pop()}` : "";
    console.log(`pack: ${shown(tarball)} ${kib(tarball)} (library ${kib(result.library)}${floor})`);
    packed++;
  }
  console.log(`pack: ${packed} packed, ${skipped} skipped`);
}
