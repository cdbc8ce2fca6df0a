// Builds everything under dist/ from one source:
//   dist/chromium/  MV3 extension for Chrome, Edge, Brave (load unpacked or pack)
//   dist/firefox/   Firefox extension (gecko id, minimum version)
//   dist/sdk/       agent-helper.mjs (ESM), agent-helper.js (plain script,
//                   global `AgentHelper`), .d.ts types
// The SDK's protocol types are generated here from sdk/protocol.schema.json,
// which a Rust test keeps equal to the helper's own types; `tsc` then checks
// the SDK and the demo page against them.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { compile } from "json-schema-to-typescript";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;

async function generateTypes() {
  const schema = JSON.parse(readFileSync(join(root, "sdk/protocol.schema.json"), "utf8"));
  let ts = await compile(schema, "Protocol", {
    bannerComment: "/* Generated from sdk/protocol.schema.json (the helper's Rust types) by build.mjs. Do not edit. */",
    additionalProperties: false,
    unreachableDefinitions: true,
    format: false,
  });
  ts += `
export type Methods = Protocol["methods"];
export type Events = Protocol["events"];
export type MethodName = keyof Methods;
export type EventName = keyof Events;
`;
  writeFileSync(join(root, "sdk/src/protocol.ts"), ts);
}

function extension(browser) {
  const out = join(dist, browser);
  mkdirSync(out, { recursive: true });
  for (const f of ["background.js", "content.js", "origins.js", "options.html", "options.js", "icon-128.png"]) {
    cpSync(join(root, "src", f), join(out, f));
  }
  const base = JSON.parse(readFileSync(join(root, "src/manifest.base.json"), "utf8"));
  const manifest = { ...base.common, version, ...base[browser] };
  if (browser === "chromium") cpSync(join(root, "src/managed-schema.json"), join(out, "managed-schema.json"));
  writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
}

async function sdk() {
  const entry = join(root, "sdk/src/index.ts");
  const common = { entryPoints: [entry], bundle: true, target: "es2022", logLevel: "warning" };
  await esbuild.build({ ...common, format: "esm", outfile: join(dist, "sdk/agent-helper.mjs") });
  await esbuild.build({
    ...common,
    format: "iife",
    globalName: "AgentHelperSDK",
    footer: { js: "globalThis.AgentHelper = AgentHelperSDK.AgentHelper;" },
    outfile: join(dist, "sdk/agent-helper.js"),
  });
  // Type-checks the SDK against the generated protocol types and writes .d.ts.
  execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "sdk")], {
    stdio: "inherit",
  });
}

rmSync(dist, { recursive: true, force: true });
await generateTypes();
extension("chromium");
extension("firefox");
await sdk();
console.log(`built ${dist} (version ${version})`);
