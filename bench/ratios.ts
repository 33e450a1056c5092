// Quiver's single-threaded QPS ratio to every peer at given recall targets, from bench:ann's JSON
// lines (bench/results/ann-*.jsonl or saved `--json` output). For each library the best QPS among
// its ef settings reaching the recall; "-" where none does. Prints a Markdown table.
//
//   bun bench/ratios.ts FILE.jsonl [FILE.jsonl ...] [--targets 0.95,0.99] [--quiver quiver,quiver-i8]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { ResultLine } from "./peers/run.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { targets: { type: "string", default: "0.95,0.99" }, quiver: { type: "string", default: "quiver,quiver-i8,quiver-rabitq" } },
});
const targets = values.targets!.split(",").map(Number);
const ours = values.quiver!.split(",");

for (const file of positionals) {
  const rows = readFileSync(file, "utf8").split("\n").filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l)).filter((r) => "qps" in r && r.threads === 1) as ResultLine[];
  if (rows.length === 0) continue;
  const best = (library: string, target: number) => {
    const ok = rows.filter((r) => r.library === library && r.recall >= target);
    if (ok.length === 0) return null;
    return ok.reduce((a, b) => (b.qps > a.qps ? b : a));
  };
  const libraries = [...new Set(rows.map((r) => r.library))];
  const peers = libraries.filter((l) => !l.startsWith("quiver"));
  console.log(`\n${rows[0].dataset} (${file})\n`);
  console.log(`| library | build s | ${targets.map((t) => `QPS at recall >= ${t} (ef)`).join(" | ")} | ${ours.flatMap((q) => targets.map((t) => `${q} / it at ${t}`)).join(" | ")} |`);
  console.log(`| --- | --- | ${targets.map(() => "---").join(" | ")} | ${ours.flatMap(() => targets.map(() => "---")).join(" | ")} |`);
  for (const library of [...libraries.filter((l) => l.startsWith("quiver")), ...peers]) {
    const cells = targets.map((t) => {
      const r = best(library, t);
      return r ? `${Math.round(r.qps).toLocaleString("en-US")} (${r.ef}, ${r.recall.toFixed(4)})` : "-";
    });
    const ratios = ours.flatMap((q) => targets.map((t) => {
      if (library.startsWith("quiver")) return "";
      const a = best(q, t), b = best(library, t);
      return a && b ? `${(a.qps / b.qps).toFixed(2)}x` : "-";
    }));
    const build = rows.find((r) => r.library === library)!.build_s;
    console.log(`| ${library} | ${build.toFixed(2)} | ${cells.join(" | ")} | ${ratios.join(" | ")} |`);
  }
}
