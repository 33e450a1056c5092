/**
 * A single binary: `bun build --compile examples/hello.ts` must carry the native library inside
 * and run from an empty directory outside the repository with a clean environment.
 *
 * Bun only: `--compile` is Bun's single-file executable, and the embedding under test is the
 * Bun adapter's (`with { type: "file" }` in src/runtime/bun.ts). Deno registers nothing here.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { assert, assertEquals, repoPath, runSync, runtime, tempDir, test } from "./harness.ts";

if (runtime === "bun") {
  test("compile: the single binary of examples/hello.ts runs from an empty directory with a clean environment", () => {
    // deno-lint-ignore no-explicit-any
    const bun = (globalThis as any).process.execPath as string;
    const buildDir = tempDir();
    const runDir = tempDir();
    try {
      const built = join(buildDir, "hello");
      const build = runSync([bun, "build", "--compile", repoPath("examples/hello.ts"), "--outfile", built], { cwd: repoPath(".") });
      assertEquals(build.code, 0, `bun build --compile failed:\n${build.stderr}`);
      assert(existsSync(built), "no binary was written");

      // The binary carries the library: a 64 KiB run of libquiver.so's bytes is inside it.
      const library = readFileSync(repoPath("zig-out/lib/libquiver.so"));
      const binary = readFileSync(built);
      const middle = library.length >> 1;
      assert(binary.indexOf(library.subarray(middle, middle + 65536)) >= 0, "the binary does not contain libquiver.so");

      // Run a copy in a fresh empty directory, outside the repository, with a clean environment:
      // nothing inherited (no QUIVER_LIB, no PATH, no HOME) but a private TMPDIR, so that a copy
      // of the library an adapter extracts lands in our directory, not in the shared /tmp.
      const alone = join(runDir, "hello");
      copyFileSync(built, alone);
      chmodSync(alone, 0o755);
      assertEquals(readdirSync(runDir), ["hello"]);
      assert(!runDir.startsWith(repoPath(".")), `${runDir} is inside the repository`);
      const privateTmp = join(runDir, "tmp");
      mkdirSync(privateTmp);
      // Twice: a second start must not trip over what the first one left.
      for (let i = 0; i < 2; i++) {
        const run = runSync([alone], { cwd: runDir, env: { TMPDIR: privateTmp }, clearEnv: true });
        assertEquals(
          { code: run.code, stdout: new TextDecoder().decode(run.stdout) },
          { code: 0, stdout: "[1,4]\n" },
          `run ${i + 1} of the compiled binary failed; stderr:\n${run.stderr}`,
        );
      }
      const left = readdirSync(privateTmp, { recursive: true });
      if (left.length > 0) console.log(`compile.test.ts: the binary left in TMPDIR: ${left.join(", ")}`);
    } finally {
      rmSync(buildDir, { recursive: true, force: true });
      rmSync(runDir, { recursive: true, force: true });
    }
  });
}
