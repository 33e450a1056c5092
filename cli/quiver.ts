#!/usr/bin/env bun
/**
 * `quiver`: build, inspect, query, export and benchmark Quiver indexes from the shell.
 *
 *   quiver build vectors.npy idx.qv
 *   quiver search idx.qv --from vectors.npy --row 0 -k 10
 *
 * Runs under Bun (`bun cli/quiver.ts`, the package's `bin`, or a `bun build --compile` binary)
 * and Deno (`deno run -A cli/quiver.ts`). Arguments are parsed by node:util's parseArgs.
 * Exit codes (see EXIT): 0 success, 1 other failure, 2 bad usage, 3 bad input, 4 corrupt index.
 * Results go to stdout (`--json` for scripts); progress and errors go to stderr.
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { cmdBackup, cmdBench, cmdBuild, cmdCompact, cmdExport, cmdGet, cmdSearch, cmdStats, cmdVerify } from "./commands.ts";
import { EXIT, UsageError, exitCodeOf } from "./common.ts";

interface Command {
  usage: string;
  summary: string;
  options: Record<string, { type: "string" | "boolean"; short?: string; help: string }>;
  positionals: string[];
  run: (args: { positionals: string[]; values: Record<string, string | boolean | undefined> }) => Promise<unknown> | unknown;
}

const common = {
  json: { type: "boolean", help: "print one JSON document on stdout instead of text" },
  help: { type: "boolean", short: "h", help: "show this help" },
} as const;

export const COMMANDS: Record<string, Command> = {
  build: {
    usage: "quiver build <input> <index> [options]",
    summary: "build an index from a vector file (.npy, .fvecs, .bvecs, .ivecs, .jsonl, .hdf5, idx)",
    positionals: ["input", "index"],
    options: {
      metric: { type: "string", help: 'l2 (default; the HDF5 file\'s "distance" when it has one), ip or cosine' },
      m: { type: "string", help: "graph degree M (default 16)" },
      "ef-construction": { type: "string", help: "beam width while inserting (default 128)" },
      storage: { type: "string", help: "f32 (default), f16 or i8" },
      threads: { type: "string", help: "native threads (default: every core)" },
      "id-field": { type: "string", help: 'JSON Lines: the id field (default "id")' },
      "vector-field": { type: "string", help: 'JSON Lines: the vector field (default "vector")' },
      "metadata-field": { type: "string", help: 'JSON Lines: the metadata field (default "metadata")' },
      dataset: { type: "string", help: 'HDF5: the dataset to read (default "train")' },
      format: { type: "string", help: "the input's format when its name does not say it" },
      append: { type: "boolean", help: "add to an existing index instead of refusing it" },
      batch: { type: "string", help: "vectors per native call (default 4096)" },
    },
    run: cmdBuild,
  },
  search: {
    usage: "quiver search <index> (--vector JSON | --from <file> --row N) [options]",
    summary: "the k nearest neighbours of one vector",
    positionals: ["index"],
    options: {
      vector: { type: "string", help: "the query as a JSON array of numbers" },
      from: { type: "string", help: "read the query from this vector file (any input format)" },
      row: { type: "string", help: "the row of --from (default 0)" },
      k: { type: "string", short: "k", help: "neighbours to return (default 10)" },
      ef: { type: "string", help: "beam width (default max(64, k))" },
      filter: { type: "string", help: 'JSON object: only results whose metadata has these fields, e.g. \'{"lang":"en"}\'' },
      "no-rerank": { type: "boolean", help: "f16/i8: rank by the quantized distances" },
      dataset: { type: "string", help: "HDF5 --from: the dataset (default \"train\")" },
    },
    run: cmdSearch,
  },
  get: {
    usage: "quiver get <index> <key-or-id>",
    summary: "the stored vector (and id and metadata) of a key, or of a string id from JSON Lines",
    positionals: ["index", "key"],
    options: {},
    run: cmdGet,
  },
  stats: {
    usage: "quiver stats <index>",
    summary: "sizes, parameters and safety counters",
    positionals: ["index"],
    options: {},
    run: cmdStats,
  },
  verify: {
    usage: "quiver verify <index> [--full]",
    summary: "integrity walk; exit code 4 when the index is corrupt",
    positionals: ["index"],
    options: { full: { type: "boolean", help: "also checksum every byte of the files on open" } },
    run: cmdVerify,
  },
  compact: {
    usage: "quiver compact <index> [--threads N]",
    summary: "reclaim the slots of removed and replaced vectors",
    positionals: ["index"],
    options: { threads: { type: "string", help: "native threads (default: every core)" } },
    run: cmdCompact,
  },
  backup: {
    usage: "quiver backup <index> <destination>",
    summary: "a consistent copy of the index (and its sidecar) as a new index",
    positionals: ["index", "destination"],
    options: {},
    run: cmdBackup,
  },
  export: {
    usage: "quiver export <index> <output.npy|output.jsonl> [--keys keys.npy]",
    summary: "write every live vector, in key order, as .npy or JSON Lines (ids and metadata too)",
    positionals: ["index", "output"],
    options: {
      format: { type: "string", help: "npy or jsonl (default: from the output's name)" },
      keys: { type: "string", help: ".npy export: also write the keys as a uint64 .npy column here" },
    },
    run: cmdExport,
  },
  bench: {
    usage: "quiver bench <index> [options]",
    summary: "recall@k against brute force on a sample of the index's own vectors, and QPS over an ef sweep",
    positionals: ["index"],
    options: {
      sample: { type: "string", help: "query vectors sampled from the index (default 200)" },
      k: { type: "string", short: "k", help: "neighbours per query (default 10)" },
      ef: { type: "string", help: "comma-separated ef values (default 10,20,40,80,160,320)" },
      svg: { type: "string", help: "write the recall/QPS plot here (default <index>.bench.svg)" },
      seed: { type: "string", help: "sampling seed (default 1)" },
    },
    run: cmdBench,
  },
};

/** One flag as `util.parseArgs` takes it, with its help line. */
interface FlagSpec {
  readonly type: "string" | "boolean";
  readonly short?: string;
  readonly help: string;
}

function commandHelp(name: string): string {
  const c = COMMANDS[name];
  const all: Record<string, FlagSpec> = { ...c.options, ...common };
  const rows = Object.entries(all).map(([flag, o]) => {
    const left = `${o.short ? `-${o.short}, ` : "    "}--${flag}${o.type === "string" ? " <value>" : ""}`;
    return `  ${left.padEnd(30)} ${o.help}`;
  });
  return `${c.usage}\n\n${c.summary}.\n\nOptions:\n${rows.join("\n")}\n\n${EXIT_HELP}`;
}

const EXIT_HELP = `Exit codes: ${EXIT.ok} success, ${EXIT.failure} other failure (I/O, locked), ${EXIT.usage} bad usage, ` +
  `${EXIT.input} bad input (malformed file, wrong dimensions, unknown key), ${EXIT.corrupt} corrupt index.`;

function mainHelp(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`);
  return `quiver: build, query and inspect Quiver vector indexes.\n\nUsage: quiver <command> [arguments] [--json] [--help]\n\nCommands:\n${
    rows.join("\n")
  }\n\nRun "quiver <command> --help" for a command's options.\n${EXIT_HELP}`;
}

/** Runs the CLI on `argv` (without the runtime and script); returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    if (name === undefined) {
      process.stderr.write(`${mainHelp()}\n`);
      return EXIT.usage;
    }
    process.stdout.write(`${mainHelp()}\n`);
    return EXIT.ok;
  }
  const command = COMMANDS[name];
  const json = rest.includes("--json");
  if (!command) return report(new UsageError(`unknown command "${name}"; the commands are ${Object.keys(COMMANDS).join(", ")}`), json);
  let parsed;
  try {
    const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
    const flags: Record<string, FlagSpec> = { ...command.options, ...common };
    for (const [flag, o] of Object.entries(flags)) options[flag] = o.short ? { type: o.type, short: o.short } : { type: o.type };
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (error) {
    return report(new UsageError(`${(error as Error).message}; run "quiver ${name} --help" for its options`), json);
  }
  if (parsed.values.help) {
    process.stdout.write(`${commandHelp(name)}\n`);
    return EXIT.ok;
  }
  if (parsed.positionals.length !== command.positionals.length) {
    return report(
      new UsageError(
        `${name} takes ${command.positionals.map((p) => `<${p}>`).join(" ")}, got ${parsed.positionals.length} argument(s); usage: ${command.usage}`,
      ),
      json,
    );
  }
  try {
    await command.run({ positionals: parsed.positionals, values: parsed.values as Record<string, string | boolean | undefined> });
    return EXIT.ok;
  } catch (error) {
    return report(error, json);
  }
}

/** Prints an error (as JSON on stdout with --json, else on stderr) and returns its exit code. */
function report(error: unknown, json: boolean): number {
  const code = exitCodeOf(error);
  const e = error as Error & { code?: string };
  const message = e?.message ?? String(error);
  if (json && !(error as { printed?: boolean })?.printed) {
    process.stdout.write(`${JSON.stringify({ ok: false, exit: code, error: { name: e?.name ?? "Error", code: e?.code ?? null, message } })}\n`);
  }
  const prefix = code === EXIT.usage ? "usage error" : "error";
  process.stderr.write(`quiver: ${prefix}: ${message}\n`);
  if (code === EXIT.failure && e?.stack && process.env.QUIVER_DEBUG_CLI) process.stderr.write(`${e.stack}\n`);
  return code;
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exitCode = code;
  // Bun and Deno both exit with process.exitCode once the event loop drains; exit now so that an
  // h5wasm or Worker handle cannot keep the process alive.
  process.exit(code);
}
