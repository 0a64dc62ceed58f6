// Prints the client's size minified and gzipped (docs/clients.md quotes it).
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const result = await build({
  entryPoints: [resolve(here, "../src/index.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  write: false,
});
const code = result.outputFiles[0].contents;
console.log(`@livepush/client: ${code.length} bytes minified, ${gzipSync(code).length} bytes gzipped`);
