/**
 * The plugin in a real OpenClaw (the gateway suite's harness and mock model): the config that
 * loads the built plugin from this package through `plugins.load.paths`, and a reader for what
 * the plugin logged.
 */
import { execFile } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { onTestFinished } from "vitest";
import { type OpenClawRoot, type RunningOpenClaw, startOpenClaw } from "../../../gateway/test/openclaw/openclaw-harness.ts";

/** The package root: OpenClaw reads its package.json (`openclaw.extensions` → dist/index.js) and openclaw.plugin.json. */
export const PLUGIN_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SANDBOX_SESSIONS = { defaults: { sandbox: { mode: "non-main", scope: "session" } }, entries: { main: {} } };

/** Starts OpenClaw with sandbox `{ mode: "non-main", scope: "session" }` and `extra` top-level blocks (`withPlugin(...)`, or none). */
export function startSandboxed(oc: OpenClawRoot, modelBaseUrl: string, extra: Record<string, unknown> = {}): Promise<RunningOpenClaw> {
  return startOpenClaw(oc, modelBaseUrl, SANDBOX_SESSIONS, onTestFinished, extra);
}

/** The `plugins` block that loads the plugin with `config` (plugins.allow names it, so OpenClaw loads it without the provenance warning). */
export function withPlugin(config: Record<string, unknown> = {}): Record<string, unknown> {
  return { plugins: { allow: ["ocgw-reclaim"], load: { paths: [PLUGIN_ROOT] }, entries: { "ocgw-reclaim": { enabled: true, config } } } };
}

/**
 * Brings dist/ up to date with src/ (`tsc -b`, incremental: seconds when nothing changed), so the
 * suite loads the built package, as users do, and never a stale one.
 */
export async function buildPlugin(): Promise<void> {
  const tsc = path.join(PLUGIN_ROOT, "..", "..", "node_modules", "typescript", "bin", "tsc");
  await promisify(execFile)(process.execPath, [tsc, "-b", path.join(PLUGIN_ROOT, "tsconfig.build.json")], { cwd: PLUGIN_ROOT });
  await stat(path.join(PLUGIN_ROOT, "dist", "index.js"));
}

/** The plugin's lines in OpenClaw's log file (JSON lines; the message is field "1"). */
export async function pluginLog(oc: OpenClawRoot): Promise<string[]> {
  const text = await readFile(path.join(oc.root, "openclaw.log"), "utf8").catch(() => "");
  const lines: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.includes("ocgw-reclaim")) continue;
    try {
      const record = JSON.parse(line) as Record<string, unknown>;
      const message = record["1"] ?? record["message"];
      if (typeof message === "string") lines.push(message);
    } catch {
      // A partial line being written.
    }
  }
  return lines;
}

/** Polls `probe` every 250 ms until it returns true or `ms` pass; returns its last answer. */
export async function eventually(probe: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

export const exists = (file: string): Promise<boolean> => stat(file).then(() => true, () => false);
