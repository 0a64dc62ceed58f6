// Empties dist/ before a build, so a file whose source is gone (renamed, deleted) is not packed
// into the npm tarball with the rest.
import { rmSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

rmSync(resolve(dirname(fileURLToPath(import.meta.url)), "../dist"), { recursive: true, force: true });
