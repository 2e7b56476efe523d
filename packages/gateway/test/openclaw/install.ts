/**
 * The pinned real OpenClaw for the integration suite: `openclaw@2026.9.6` from the npm registry,
 * installed once (`--ignore-scripts`) into `node_modules/.cache/ocgw-openclaw/<version>/` and run
 * with the repo's Node 24. Vitest's globalSetup for `npm run test:openclaw`.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const OPENCLAW_VERSION = "2026.9.6";
const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
export const OPENCLAW_PREFIX = path.join(REPO, "node_modules", ".cache", "ocgw-openclaw", OPENCLAW_VERSION);
/** The installed package (its `openclaw.mjs` is the CLI). */
export const OPENCLAW_PACKAGE = path.join(OPENCLAW_PREFIX, "node_modules", "openclaw");

async function installedVersion(): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(path.join(OPENCLAW_PACKAGE, "package.json"), "utf8")) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

export default async function setup(): Promise<void> {
  if ((await installedVersion()) === OPENCLAW_VERSION && existsSync(path.join(OPENCLAW_PACKAGE, "openclaw.mjs"))) return;
  await rm(OPENCLAW_PREFIX, { recursive: true, force: true });
  await mkdir(OPENCLAW_PREFIX, { recursive: true });
  const started = Date.now();
  process.stdout.write(`installing openclaw@${OPENCLAW_VERSION} into ${OPENCLAW_PREFIX} (first run only)…\n`);
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  await promisify(execFile)(npm, ["install", "--prefix", OPENCLAW_PREFIX, "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error", `openclaw@${OPENCLAW_VERSION}`], { maxBuffer: 64 * 1024 * 1024 });
  if ((await installedVersion()) !== OPENCLAW_VERSION) throw new Error(`npm did not install openclaw@${OPENCLAW_VERSION} into ${OPENCLAW_PREFIX}`);
  process.stdout.write(`installed openclaw@${OPENCLAW_VERSION} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}
