/**
 * Honest engines: every package.json states the Node the bin checks for, and on an older Node the
 * bin prints one line and exits 1 (no stack trace). The bin's source is plain JavaScript, so the
 * test runs a copy of it as .js under the machine's old Node (skipped when there is none).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { compileCacheDir } from "../src/compile-cache.ts";
import { REPO_ROOT, tempDir } from "./helpers.ts";

const BIN_SOURCE = path.join(REPO_ROOT, "packages", "cli", "src", "bin.ts");
const MANIFESTS = ["package.json", "packages/workspace/package.json", "packages/gateway/package.json", "packages/cli/package.json"];

async function supportedNode(): Promise<string> {
  const match = /const SUPPORTED_NODE = "([^"]+)";/.exec(await fs.readFile(BIN_SOURCE, "utf8"));
  if (!match?.[1]) throw new Error("bin.ts lost its SUPPORTED_NODE constant");
  return match[1];
}

/** The first system Node older than 22 (CI's image has Node 20 in /usr/bin), or undefined. */
function oldNode(): { bin: string; version: string } | undefined {
  for (const bin of ["/usr/bin/node", "/usr/local/bin/node"]) {
    const probe = spawnSync(bin, ["--version"], { encoding: "utf8" });
    const version = probe.status === 0 ? probe.stdout.trim() : "";
    if (/^v(1\d|2[01])\./.test(version)) return { bin, version };
  }
  return undefined;
}

describe("engines", () => {
  it("every package.json's engines.node is the bin's SUPPORTED_NODE", async () => {
    const supported = await supportedNode();
    for (const manifest of MANIFESTS) {
      const { engines } = JSON.parse(await fs.readFile(path.join(REPO_ROOT, manifest), "utf8")) as { engines?: { node?: string } };
      expect(engines?.node, manifest).toBe(supported);
    }
  });

  const old = oldNode();
  it.skipIf(old === undefined)(`on ${old?.version ?? "an old Node"} the bin prints one line and exits 1`, async () => {
    if (old === undefined) return;
    const t = await tempDir();
    // Plain JS, as the build emits it: the source has no type annotations and no static imports.
    await fs.writeFile(path.join(t.dir, "package.json"), '{ "type": "module" }\n');
    await fs.copyFile(BIN_SOURCE, path.join(t.dir, "bin.js"));
    const result = spawnSync(old.bin, [path.join(t.dir, "bin.js"), "gateway", "run"], { encoding: "utf8", env: { PATH: "/usr/bin:/bin", HOME: t.dir } });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(`ocgw: needs Node.js ${await supportedNode()}, found ${old.version}\n`);
  });
});

describe("compileCacheDir", () => {
  it("is beside the dependencies when installed, the repo's node_modules/.cache otherwise", () => {
    expect(compileCacheDir(pathToFileURL("/p/node_modules/@ocgw/cli/dist/main.js").href)).toBe("/p/node_modules/.cache/ocgw-compile");
    expect(compileCacheDir(pathToFileURL("/g/lib/node_modules/@ocgw/cli/dist/main.js").href)).toBe("/g/lib/node_modules/.cache/ocgw-compile");
    expect(compileCacheDir(pathToFileURL("/repo/packages/cli/src/main.ts").href)).toBe("/repo/node_modules/.cache/ocgw-compile");
  });
});
