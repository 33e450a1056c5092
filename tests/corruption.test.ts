/**
 * Corruption: thousands of damaged copies of four small indexes (closed cleanly with f32, f16
 * and i8 storage, and one killed with writes in its WAL) are opened with `validate: "full"` (and
 * some with "fast"). Every case
 * must end in a typed QuiverError or in an index that opens and works; a case also states what
 * its damage must produce (fixtures/corruption_cases.ts): e.g. a flipped bit anywhere the
 * checkpoint hashed must be CorruptIndexError, a truncated data/graph/upper file too, a version
 * edit UnsupportedVersionError, an undamaged-but-extended file the exact original contents, a
 * damaged WAL exactly the records before the damage.
 *
 * The cases run in child processes (fixtures/corruption_child.ts): a crash (SIGSEGV, SIGBUS, a
 * Zig panic) is reported with its seed and case number, the run goes on from the next case, and
 * a crashing case with several mutations is re-run one mutation at a time to find the minimal
 * one. A second, smaller pass loads the Debug library (QUIVER_DEBUG=1), where the assertions
 * that ReleaseFast compiles out turn undefined behaviour on corrupt input into a visible panic.
 *
 * QUIVER_SEED replays; QUIVER_CASES sets the number of cases (default 10000; QUIVER_SOAK=1:
 * 200000); QUIVER_CASE=<n> runs case n alone (add QUIVER_DEBUG=1 for the Debug library) and
 * QUIVER_KEEP=1 keeps its files. The file format is read from native/storage/layout.zig and native/storage/wal.zig (tests/fixtures/
 * util.ts), and the fixtures' own checksums are a canary that the model matches the library.
 */
import { Index } from "../mod.ts";
import { assert, envFlag, killChildren, runtime, seedFromEnv, spawnRuntime, test } from "./harness.ts";
import { type BaseName, type Bases, type Case, describe, describeBase, makeCase } from "./fixtures/corruption_cases.ts";
import { exists, fileSize, indexFiles, makeTempDir, readBytes, removeDir, seededVector, writeBytes } from "./fixtures/util.ts";

const soak = envFlag("QUIVER_SOAK") === "1";
const single = envFlag("QUIVER_CASE");
const cases = single !== undefined ? 1 : Number(envFlag("QUIVER_CASES") ?? (soak ? 200_000 : 10_000));
const debugCases = single !== undefined ? 0 : Math.ceil(cases / 8);
const keep = envFlag("QUIVER_KEEP") === "1";
const here = (file: string) => new URL(file, import.meta.url).pathname;
const fixtureSeed = 7;
const dimensions = 8;

type Tally = Record<string, Record<string, number>>;

interface Crash {
  n: number;
  debug: boolean;
  status: string;
  stderr: string;
  description: string;
  minimal?: string;
}

test(`corruption: ${cases} damaged indexes open with a typed error or work (plus ${debugCases} on the Debug library)`, async () => {
  const seed = seedFromEnv(Math.floor(Math.random() * 2 ** 31));
  console.log(`corruption: seed ${seed} (replay with QUIVER_SEED=${seed}), ${cases} + ${debugCases} debug cases, ${runtime}`);
  const dir = makeTempDir("quiver-corrupt-");
  const started = performance.now();
  try {
    const fixtures = `${dir}/fixtures`;
    const work = `${dir}/work`;
    (await import("node:fs")).mkdirSync(fixtures);
    (await import("node:fs")).mkdirSync(work);
    await buildFixtures(fixtures);
    const load = (name: BaseName) => describeBase(name, indexFiles().map((s) => readBytes(`${fixtures}/${name}${s}`)));
    const bases: Bases = { clean: load("clean"), dirty: load("dirty"), half: load("half"), quant: load("quant"), aligned: load("aligned") };
    const wal = indexFiles().length - 1;
    assert(bases.clean.info.slotsUsed > 300 && bases.dirty.files[wal].length > 0, "the fixtures are not what this spec expects");
    assert(
      bases.half.info.storage === 1 && bases.quant.info.storage === 2 && bases.quant.info.exactPrefix > 0 &&
        bases.aligned.info.storage === 2 && bases.aligned.info.vectorOffset % 64 === 0 && bases.quant.info.vectorOffset % 64 !== 0,
      `the f16/i8 fixtures have storage ${bases.half.info.storage}/${bases.quant.info.storage}: tests/fixtures/corruption_cases.ts disagrees with native/storage/layout.zig`,
    );
    const built = performance.now();

    const tally: Tally = {};
    const failures: string[] = [];
    const crashes: Crash[] = [];
    const first = single !== undefined ? Number(single) : 0;
    if (single !== undefined) console.log(describe(makeCase(seed, first, bases)));
    await runCases({ fixtures, work, seed, first, count: cases, debug: false, tally, failures, crashes });
    const release = performance.now();
    await runCases({ fixtures, work, seed, first: 1_000_000, count: debugCases, debug: true, tally, failures, crashes });
    const debug = performance.now();
    for (const [k, crash] of crashes.entries()) {
      const c = makeCase(seed, crash.n, bases);
      crash.description = describe(c);
      if (k < 5 && c.mutations.length > 1) crash.minimal = await minimize(fixtures, work, seed, crash, c);
    }

    printTally(tally);
    console.log(
      `corruption: fixtures ${((built - started) / 1000).toFixed(1)} s, ${cases} cases ${((release - built) / 1000).toFixed(1)} s, ` +
        `${debugCases} debug cases ${((debug - release) / 1000).toFixed(1)} s (${runtime})`,
    );
    // One block per distinct crash site and per distinct failure, with up to three examples.
    for (const [site, group] of groupBy(crashes, (c) => crashSite(c.stderr))) {
      console.log(`CRASH x${group.length} at ${site}`);
      for (const crash of group.slice(0, 3)) {
        console.log(`  (${crash.debug ? "Debug" : "ReleaseFast"} library, ${crash.status}) seed ${seed} ${crash.description || `case ${crash.n}`}`);
        if (crash.minimal) console.log(`    minimal: ${crash.minimal}`);
      }
      console.log(`  stderr: ${crashLines(group[0].stderr).join("\n    ")}`);
    }
    for (const [signature, group] of groupBy(failures, failureSignature)) {
      console.log(`FAIL x${group.length}: ${signature}`);
      for (const failure of group.slice(0, 3)) console.log(`  seed ${seed} ${failure}`);
    }
    assert(crashes.length === 0, `${crashes.length} case(s) crashed the process (seed ${seed}; see CRASH lines)`);
    assert(failures.length === 0, `${failures.length} case(s) broke their expectation (seed ${seed}; see FAIL lines)`);
    for (const [category] of Object.entries(tally)) assert(Object.keys(tally[category]).length > 0, category);
  } finally {
    killChildren();
    if (keep) console.log(`corruption: files kept in ${dir}`);
    else removeDir(dir);
  }
}, soak ? 6 * 3600_000 : 170_000);

/**
 * The bases: "clean" (f32), "half" (f16 storage, with its exact-vector file) and "quant" (i8
 * storage: codes in the records, exact vectors and the centre in the exact-vector file; the
 * centre trained by the first add, a single vector) closed cleanly by this process; "dirty"
 * killed by a child with writes in its WAL.
 */
async function buildFixtures(dir: string) {
  for (const [name, storage] of [["clean", "f32"], ["half", "f16"], ["quant", "i8"]] as const) {
    const index = Index.open(`${dir}/${name}`, { dimensions, m: 4, efConstruction: 32, capacity: 64, storage });
    for (let i = 0; i < 320; i++) index.add(i + 1, seededVector(fixtureSeed, i, dimensions));
    for (let i = 0; i < 30; i++) index.add(i * 9 + 1, seededVector(fixtureSeed, 2000 + i, dimensions));
    for (let i = 0; i < 30; i++) index.remove(i * 10 + 2);
    index.close();
  }
  const proc = spawnRuntime(here("./fixtures/make_dirty.ts"), [`${dir}/dirty`, String(fixtureSeed + 1), String(dimensions)]);
  while ((await proc.nextLine()) !== null) { /* drain */ }
  const status = await proc.exited;
  assert(status.signal === "SIGKILL", `make_dirty.ts should have killed itself: ${JSON.stringify(status)}\n${await proc.stderr}`);
  assert(fileSize(`${dir}/dirty.wal`) > 0, "the dirty fixture has an empty WAL");
  assert((exists(`${dir}/half.vectors`) && exists(`${dir}/quant.vectors`)) || !indexFiles().includes(".vectors"), "no exact-vector file");
  // "aligned": a real format 2 i8 index (8 dimensions, M = 4, as the others), written before i8
  // records were packed.
  const { gunzipSync } = await import("node:zlib");
  for (const suffix of indexFiles()) {
    const packed = readBytes(here(`./fixtures/format2/i8-d8-l8${suffix}.gz`));
    writeBytes(`${dir}/aligned${suffix}`, new Uint8Array(gunzipSync(packed)));
  }
}

interface RunInput {
  fixtures: string;
  work: string;
  seed: number;
  first: number;
  count: number;
  debug: boolean;
  tally: Tally;
  failures: string[];
  crashes: Crash[];
}

/** Runs cases [first, first + count) in children, restarting after the case a child died in. */
async function runCases(input: RunInput) {
  const { fixtures, work, seed, debug, tally, failures, crashes } = input;
  const end = input.first + input.count;
  let next = input.first;
  while (next < end) {
    const env: Record<string, string> = debug ? { QUIVER_DEBUG: "1" } : {};
    const proc = spawnRuntime(here("./fixtures/corruption_child.ts"), [fixtures, work, String(seed), String(next), String(end - next)], env);
    let current = -1;
    let finished = false;
    for (;;) {
      const line = await proc.nextLine();
      if (line === null) break;
      if (line.startsWith("c ")) current = Number(line.slice(2));
      else if (line.startsWith("fail ")) failures.push(`${debug ? "(Debug library) " : ""}${line.slice(5)}`);
      else if (line.startsWith("tally ")) merge(tally, JSON.parse(line.slice(6)));
      else if (line === "end") finished = true;
    }
    const status = await proc.exited;
    const stderr = await proc.stderr;
    if (finished && status.code === 0) return;
    assert(current >= 0, `the corruption child failed before its first case: ${JSON.stringify(status)}\n${stderr}`);
    crashes.push({ n: current, debug: debug || envFlag("QUIVER_DEBUG") === "1", status: JSON.stringify(status), stderr, description: "" });
    if (crashes.length > 50) throw new Error(`more than 50 crashes; the first: case ${crashes[0].n}\n${crashes[0].stderr}`);
    next = current + 1;
  }
}

/**
 * Shrinks a crashed case: drops each mutation in turn and keeps it dropped if the rest still
 * crash. Returns the mutations that remain, described.
 */
async function minimize(fixtures: string, work: string, seed: number, crash: Crash, c: Case): Promise<string> {
  let kept = c.mutations.map((_, k) => k);
  for (const k of [...kept]) {
    const without = kept.filter((x) => x !== k);
    if (without.length === 0) continue;
    const env: Record<string, string> = crash.debug ? { QUIVER_DEBUG: "1" } : {};
    const proc = spawnRuntime(here("./fixtures/corruption_child.ts"), [fixtures, work, String(seed), String(crash.n), "1", without.join(",")], env);
    let finished = false;
    for (let line = await proc.nextLine(); line !== null; line = await proc.nextLine()) if (line === "end") finished = true;
    const status = await proc.exited;
    if (!finished || status.code !== 0) kept = without;
  }
  return describe({ ...c, mutations: kept.map((k) => c.mutations[k]) });
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(item);
  }
  return groups;
}

/** The panic message and the first frame in native/, e.g. "integer overflow @ index/write.zig:96". */
function crashSite(stderr: string): string {
  const panic = /panic: ([^\n]*)/.exec(stderr)?.[1] ?? /(Segmentation fault|SIGSEGV|SIGBUS|SIGILL)/.exec(stderr)?.[1] ?? "no panic message";
  const frame = /native\/([\w.]+:\d+)/.exec(stderr)?.[1] ?? "?";
  return `${panic} @ ${frame}`;
}

/** What went wrong and which kind of damage, without the numbers: one line per distinct bug. */
function failureSignature(failure: string): string {
  const [why, what] = failure.split(" :: ");
  const problem = why.replace(/^\(Debug library\) /, "").replace(/^\d+ /, "").split(":")[0].replace(/\d+/g, "#");
  const damage = (what ?? "").replace(/^case \d+ \[([^,]*),[^\]]*\]: /, "$1: ").replace(/\d+/g, "#");
  return `${problem} <- ${damage}`;
}

/** The panic message and the first frames of a crash, else the tail of stderr. */
function crashLines(stderr: string): string[] {
  const lines = stderr.trim().split("\n");
  const at = lines.findIndex((l) => /panic|Segmentation|SIGSEGV|SIGBUS|fault/i.test(l));
  return at >= 0 ? lines.slice(at, at + 10) : lines.slice(-12);
}

function merge(into: Tally, from: Tally) {
  for (const [category, outcomes] of Object.entries(from)) {
    into[category] ??= {};
    for (const [outcome, n] of Object.entries(outcomes)) into[category][outcome] = (into[category][outcome] ?? 0) + n;
  }
}

function printTally(tally: Tally) {
  const lines = Object.entries(tally)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([category, outcomes]) => {
      const total = Object.values(outcomes).reduce((s, n) => s + n, 0);
      const parts = Object.entries(outcomes).sort(([, a], [, b]) => b - a).map(([o, n]) => `${o} ${n}`);
      return `  ${category.padEnd(40)} ${String(total).padStart(6)}: ${parts.join(", ")}`;
    });
  console.log(`corruption: outcomes by category, then by what the case required\n${lines.join("\n")}`);
}
