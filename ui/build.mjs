// Builds dist/ (the Tauri shell's frontendDist): one page per window.
// The protocol types are generated from the same schema the browser SDK uses
// (browser-extensions/sdk/protocol.schema.json, kept equal to the helper's
// Rust types by a Rust test), and the shell's own types from
// ui/shell.schema.json (kept equal to crates/shell's types the same way);
// `tsc` then checks every page against them.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { compile } from "json-schema-to-typescript";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const pages = ["softphone", "popup", "settings", "diagnostics"];

async function generate(schemaPath, name, out, extra) {
  const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
  let ts = await compile(schema, name, {
    bannerComment: `/* Generated from ${schemaPath.slice(root.length - 2)} by build.mjs. Do not edit. */`,
    additionalProperties: false,
    unreachableDefinitions: true,
    format: false,
  });
  writeFileSync(join(root, "src", out), ts + extra);
}

await generate(join(root, "../browser-extensions/sdk/protocol.schema.json"), "Protocol", "protocol.ts", `
export type Methods = Protocol["methods"];
export type Events = Protocol["events"];
export type MethodName = keyof Methods;
export type EventName = keyof Events;
`);
await generate(join(root, "shell.schema.json"), "Shell", "shell.ts", "");

execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", root], { stdio: "inherit" });

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
await esbuild.build({
  entryPoints: pages.map((p) => join(root, "src", `${p}.ts`)),
  outdir: dist,
  bundle: true,
  format: "esm",
  target: "es2022",
  logLevel: "warning",
});
for (const p of pages) cpSync(join(root, "src", `${p}.html`), join(dist, `${p}.html`));
cpSync(join(root, "src/style.css"), join(dist, "style.css"));
console.log(`built ${dist}`);
