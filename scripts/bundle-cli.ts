/**
 * The `ocgw` CLI as one bundle (`npm run build`, after `tsc -b`): rolldown bundles
 * packages/cli/src (bin, main, run) with @ocgw/gateway, @ocgw/workspace and every npm dependency
 * into packages/cli/dist, tree-shaken. Why: a start that loads ~200 ES modules from node_modules
 * spends its time resolving and linking them, and zod's unused locales and JSON-schema code cost
 * ~10 MB of RSS; the bundle starts faster and smaller (docs/benchmarks.md has the numbers). tsc
 * still emits the CLI's declarations; the library packages ship tsc's per-module output.
 *
 * The bundled packages' licences go to dist/THIRD-PARTY-LICENSES.md (MIT and ISC require their
 * notices to travel with the code). bin.js must stay free of static imports (it checks the Node
 * version before anything loads), so the build fails if rolldown gives it one.
 */
import { chmodSync, readFileSync, readdirSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { type OutputBundle, type Plugin, rolldown } from "rolldown";

const CLI = fileURLToPath(new URL("../packages/cli/", import.meta.url));
const DIST = path.join(CLI, "dist");

interface BundledPackage {
  name: string;
  version: string;
  license: string;
  text: string;
}

/** The directory of the package that holds `file` (the nearest node_modules/<name>[/<scope>]). */
function packageRoot(file: string): string | undefined {
  const parts = file.split(path.sep);
  const at = parts.lastIndexOf("node_modules");
  if (at < 0) return undefined;
  const depth = parts[at + 1]?.startsWith("@") === true ? 3 : 2;
  return parts.slice(0, at + depth).join(path.sep);
}

function readPackage(root: string): BundledPackage {
  const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { name: string; version: string; license?: string; author?: unknown };
  const id = `${manifest.name}@${manifest.version}`;
  const licenseFile = readdirSync(root).find((name) => /^(licen[cs]e|copying)(\.|$)/i.test(name));
  if (licenseFile !== undefined) return { name: manifest.name, version: manifest.version, license: manifest.license ?? "see below", text: readFileSync(path.join(root, licenseFile), "utf8").trim() };
  // A few packages (tmp-promise) ship only the `license` field: name it and its author.
  if (manifest.license === undefined) throw new Error(`${id} is bundled but states no licence (${root})`);
  const author = typeof manifest.author === "string" ? manifest.author : JSON.stringify(manifest.author ?? "its authors");
  return { name: manifest.name, version: manifest.version, license: manifest.license, text: `${manifest.license} licence, copyright ${author}; the package ships no licence file.` };
}

function thirdPartyNotices(bundle: OutputBundle): string {
  const roots = new Set<string>();
  for (const output of Object.values(bundle)) {
    if (output.type !== "chunk") continue;
    for (const id of output.moduleIds) {
      const root = packageRoot(id);
      if (root !== undefined) roots.add(root);
    }
  }
  // Nested copies of one version (p-limit under two workspaces) are one entry.
  const packages = [...new Map([...roots].map(readPackage).map((pkg) => [`${pkg.name}@${pkg.version}`, pkg])).values()];
  packages.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const sections = packages.map((pkg) => `## ${pkg.name}@${pkg.version} (${pkg.license})\n\n\`\`\`\n${pkg.text}\n\`\`\`\n`);
  return `# Third-party licences\n\nThe \`ocgw\` bundle (dist/*.js) contains these packages.\n\n${sections.join("\n")}`;
}

/** Emits THIRD-PARTY-LICENSES.md and refuses a bin.js with static imports. */
const checks: Plugin = {
  name: "ocgw-cli-bundle",
  generateBundle(_options, bundle) {
    const bin = bundle["bin.js"];
    if (bin?.type !== "chunk") throw new Error("the bundle has no bin.js");
    if (bin.imports.length > 0) throw new Error(`bin.js would import ${bin.imports.join(", ")} before it checks the Node version`);
    this.emitFile({ type: "asset", fileName: "THIRD-PARTY-LICENSES.md", source: thirdPartyNotices(bundle) });
  },
};

const build = await rolldown({
  input: { bin: path.join(CLI, "src/bin.ts"), main: path.join(CLI, "src/main.ts"), run: path.join(CLI, "src/run.ts") },
  platform: "node",
  // The sources of the sibling packages, as in development; `node:*` stays a runtime import.
  resolve: { conditionNames: ["ocgw-source", "import", "node", "default"] },
  // ws's optional native add-ons: required in a try/catch at runtime, absent unless installed.
  external: [/^node:/, "bufferutil", "utf-8-validate"],
  plugins: [checks],
  logLevel: "warn",
});
await build.write({
  dir: DIST,
  format: "esm",
  sourcemap: true,
  entryFileNames: "[name].js",
  chunkFileNames: "[name]-[hash].js",
  // ASCII only: V8 keeps a module's source in memory, two bytes a character once one character is
  // not Latin-1 (2 MB instead of 1). Whitespace goes too; names stay, so stack traces read.
  charset: "ascii",
  minify: { compress: false, mangle: false, codegen: { removeWhitespace: true } },
});
await build.close();
chmodSync(path.join(DIST, "bin.js"), 0o755);
