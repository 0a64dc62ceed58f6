// Bundles each example page's script (examples/*/page.ts) with the client into page.js next to
// it, which the example binary serves (committed, so `cargo run` needs no Node.js).
//   node scripts/build-pages.mjs          write the bundles
//   node scripts/build-pages.mjs --check  fail when a committed bundle is not what page.ts builds to
import { build } from "esbuild";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const examples = resolve(here, "../../../examples");
const check = process.argv.includes("--check");

export async function bundle(entry) {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    target: "es2020",
    write: false,
    legalComments: "none",
    alias: { "@livepush/client": resolve(here, "../src/index.ts") },
    banner: { js: "// Built from page.ts and the livepush client by `npm run build:pages` (clients/typescript). Do not edit." },
  });
  return result.outputFiles[0].text;
}

let stale = 0;
for (const name of (await readdir(examples)).sort()) {
  const entry = join(examples, name, "page.ts");
  if (!existsSync(entry)) continue;
  const out = join(examples, name, "page.js");
  const code = await bundle(entry);
  if (check) {
    const committed = existsSync(out) ? await readFile(out, "utf8") : "";
    if (committed !== code) {
      console.error(`examples/${name}/page.js is stale: run \`npm run build:pages\` in clients/typescript`);
      stale += 1;
    }
  } else {
    await writeFile(out, code);
    console.log(`examples/${name}/page.js: ${code.length} bytes`);
  }
}
process.exit(stale ? 1 : 0);
