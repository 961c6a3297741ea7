// Builds the console into ../server/console/ (or the folder given as the first argument): the
// bundle of src/main.ts, minified, and the static files as they are. The same sources give the same
// bytes, which is how tests/test_console.py tells that the committed build is in step.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

const out = process.argv[2] ?? "../server/console";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "none",
  outfile: join(out, "console.js"),
  logLevel: "warning",
});
for (const name of readdirSync("static")) copyFileSync(join("static", name), join(out, name));
