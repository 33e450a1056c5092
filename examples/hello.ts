/**
 * Hello, Quiver: builds a tiny index, finds the two nearest neighbours of a query and prints
 * their keys as JSON. Run it with `bun examples/hello.ts` or `deno run -A examples/hello.ts`,
 * or make a single binary of it with `bun build --compile examples/hello.ts --outfile hello`.
 */
import { Index } from "../mod.ts";

using index = new Index({ dimensions: 3 });
index.add(1, [1, 0, 0]);
index.add(2, [0, 1, 0]);
index.add(3, [0, 0, 1]);
index.add(4, [0.9, 0.1, 0]);

const { keys } = index.search([1, 0.05, 0], 2);
console.log(JSON.stringify([...keys].map(Number)));
