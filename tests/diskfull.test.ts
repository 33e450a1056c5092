/**
 * A real full disk (issue 9 item 3): a 4 MiB tmpfs filled through the public API. Every call
 * on the full disk (add, a batch on native threads, compact, backup, sync, close) must end in a
 * typed error or succeed, never kill the process (the old growth ftruncated sparse files and
 * wrote through the mapping: SIGBUS); the index must reopen on the still-full disk with every
 * acknowledged write. Needs root for the mount; skipped with the reason printed otherwise.
 */
import { assert, assertEquals, repoPath, runSync, spawnRuntime, tempDir, test } from "./harness.ts";

const child = repoPath("tests/fixtures/diskfull_child.ts");

async function run(dir: string, mode: string): Promise<{ lines: string[]; status: { code: number | null; signal: string | null }; stderr: string }> {
  const proc = spawnRuntime(child, [dir, mode]);
  const lines: string[] = [];
  for (let line = await proc.nextLine(); line !== null; line = await proc.nextLine()) lines.push(line);
  return { lines, status: await proc.exited, stderr: await proc.stderr };
}

test("diskfull: a full tmpfs gives typed errors, no crash, and keeps every acknowledged write", async () => {
  const dir = tempDir();
  const mount = runSync(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir]);
  if (mount.code !== 0) {
    console.log(`diskfull: skipped, cannot mount a 4 MiB tmpfs at ${dir} (needs root): ${mount.stderr.trim()}`);
    runSync(["rmdir", dir]);
    return;
  }
  try {
    const fill = await run(dir, "fill");
    assertEquals(fill.status, { code: 0, signal: null }, `the filling child died: ${fill.lines.slice(-5).join(" | ")} ${fill.stderr}`);
    const acked = fill.lines.filter((l) => l.startsWith("acked ")).map((l) => Number(l.slice(6)));
    const errors = fill.lines.filter((l) => l.startsWith("error "));
    console.log(`diskfull: ${acked.length} adds acknowledged on 4 MiB; then ${fill.lines.filter((l) => !l.startsWith("acked ")).join("; ")}`);
    assert(acked.length > 100, `only ${acked.length} adds fit`);
    assert(errors.length >= 1 && errors[0] === "error add DiskFullError", `the first failure is ${errors[0]}`);
    for (const e of errors) assert(/Error$/.test(e) && !e.includes("untyped"), `untyped error: ${e}`);
    assert(fill.lines.includes("done"), "the child did not close the index");

    const reopen = await run(dir, "reopen");
    assertEquals(reopen.status, { code: 0, signal: null }, `the reopening child died: ${reopen.lines.join(" | ")} ${reopen.stderr}`);
    assertEquals(reopen.lines.filter((l) => l.startsWith("bad ")), [], "vectors that changed");
    const keys = new Set((reopen.lines.find((l) => l.startsWith("keys ")) ?? "keys ").slice(5).split(",").filter((k) => k !== "").map(Number));
    for (const key of acked) assert(keys.has(key), `acknowledged key ${key} is missing after reopen`);
  } finally {
    runSync(["umount", dir]);
    runSync(["rmdir", dir]);
  }
}, 120_000);
