import { lstat, readFile, realpath } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import JSON5 from "json5";
import { errnoCode } from "@ocgw/workspace";
import { GatewayError } from "../errors.ts";
import { isRecord } from "../util/guards.ts";

/**
 * Reads OpenClaw's config the way OpenClaw 2026.9 does (`io` and `includes` in its config
 * module): `$OPENCLAW_CONFIG_PATH` or `<stateDir>/openclaw.json` (legacy `clawdbot.json`), JSON5,
 * `$include` at any object level (a file or a list of files, relative to the including file, kept
 * inside the root config's directory or `$OPENCLAW_INCLUDE_ROOTS`, 10 levels, 2 MiB a file, no
 * cycles), deep-merged with arrays concatenated and siblings winning. Anything it cannot read
 * stops the scan: a config that is only partly understood would make owned directories look orphaned.
 */

/** The host facts OpenClaw's path rules depend on. */
export interface OpenClawHost {
  readonly env: NodeJS.ProcessEnv;
  /** OpenClaw's home: `$OPENCLAW_HOME` > `$HOME` > `os.homedir()`. */
  readonly homedir: string;
  /** Where relative paths resolve, as in OpenClaw's `path.resolve` (its process cwd). */
  readonly cwd: string;
}

const MAX_INCLUDE_DEPTH = 10;
const MAX_INCLUDE_BYTES = 2 * 1024 * 1024;
const INCLUDE_KEY = "$include";

export function unreadable(detail: string, file: string, cause?: unknown): GatewayError {
  return new GatewayError("LEGACY_UNREADABLE", detail, { details: { path: file }, ...(cause === undefined ? {} : { cause }) });
}


/** The host as OpenClaw sees it from `env`. */
export function openClawHost(env: NodeJS.ProcessEnv, cwd: string, homedir = os.homedir()): OpenClawHost {
  const home = env["HOME"]?.trim() || homedir;
  const override = env["OPENCLAW_HOME"]?.trim();
  return { env, cwd, homedir: override ? expandHome(override, home, cwd) : home };
}

function expandHome(value: string, home: string, cwd: string): string {
  if (value === "~") return path.resolve(home);
  if (value.startsWith("~/") || value.startsWith("~\\")) return path.resolve(home, value.slice(2));
  return path.resolve(cwd, value);
}

/** OpenClaw's `resolveUserPath`: a leading `~` is the home; anything else resolves against the cwd. */
export function resolveUserPath(value: string, host: OpenClawHost): string {
  return expandHome(value.trim(), host.homedir, host.cwd);
}

/** `$OPENCLAW_CONFIG_PATH`, else `<stateDir>/openclaw.json`, else a legacy `<stateDir>/clawdbot.json` that exists. */
export async function resolveConfigPath(stateDir: string, host: OpenClawHost): Promise<string> {
  const override = host.env["OPENCLAW_CONFIG_PATH"]?.trim();
  if (override) return resolveUserPath(override, host);
  const current = path.join(stateDir, "openclaw.json");
  const legacy = path.join(stateDir, "clawdbot.json");
  if (!(await exists(current)) && (await exists(legacy))) return legacy;
  return current;
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

async function readJson5(file: string): Promise<unknown> {
  let text: string;
  try {
    const st = await lstat(file);
    if (!st.isFile()) throw unreadable(`${file} is not a regular file`, file);
    if (st.size > MAX_INCLUDE_BYTES) throw unreadable(`${file} is larger than 2 MiB`, file);
    text = await readFile(file, "utf8");
  } catch (error) {
    if (error instanceof GatewayError) throw error;
    throw unreadable(`Cannot read ${file} (${errnoCode(error) ?? String(error)})`, file, error);
  }
  try {
    return text.trim() === "" ? {} : JSON5.parse(text);
  } catch (error) {
    const { lineNumber, columnNumber } = error as { lineNumber?: unknown; columnNumber?: unknown };
    const where = typeof lineNumber === "number" && typeof columnNumber === "number" ? ` at line ${lineNumber}, column ${columnNumber}` : "";
    const reason = error instanceof Error ? error.message.replace(/^JSON5: /, "").replace(/ at \d+:\d+$/, "") : String(error);
    throw unreadable(`${file} is not valid JSON5: ${reason}${where}`, file, error);
  }
}

/** Deep merge as OpenClaw's includes: arrays concatenate, objects merge, otherwise `b` wins. */
export function deepMerge(a: unknown, b: unknown): unknown {
  if (Array.isArray(a) && Array.isArray(b)) return [...(a as unknown[]), ...(b as unknown[])];
  if (isRecord(a) && isRecord(b)) {
    const out: Record<string, unknown> = { ...a };
    for (const [key, value] of Object.entries(b)) out[key] = key in out ? deepMerge(out[key], value) : value;
    return out;
  }
  return b;
}

interface IncludeContext {
  readonly roots: readonly string[];
  readonly chain: readonly string[];
}

function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

async function includeFile(value: unknown, from: string, ctx: IncludeContext): Promise<unknown> {
  if (typeof value !== "string" || value.trim() === "") throw unreadable(`${from}: $include must be a file name or a list of file names`, from);
  const file = path.resolve(path.dirname(from), value);
  const real = await realpath(file).catch((error: unknown) => {
    throw unreadable(`${from}: cannot read $include "${value}" (${errnoCode(error) ?? String(error)})`, file, error);
  });
  if (!ctx.roots.some((root) => isInside(root, file) && isInside(root, real))) {
    throw unreadable(`${from}: $include "${value}" is outside the config directory (allowed roots: ${ctx.roots.join(", ")}; OPENCLAW_INCLUDE_ROOTS adds more)`, file);
  }
  if (ctx.chain.includes(real)) throw unreadable(`${from}: circular $include of ${real}`, file);
  if (ctx.chain.length > MAX_INCLUDE_DEPTH) throw unreadable(`${from}: $include nested deeper than ${MAX_INCLUDE_DEPTH} levels`, file);
  return resolveIncludes(await readJson5(file), file, { ...ctx, chain: [...ctx.chain, real] });
}

async function resolveIncludes(node: unknown, from: string, ctx: IncludeContext): Promise<unknown> {
  if (Array.isArray(node)) return Promise.all(node.map((item) => resolveIncludes(item, from, ctx)));
  if (!isRecord(node)) return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) if (key !== INCLUDE_KEY) out[key] = await resolveIncludes(value, from, ctx);
  if (!(INCLUDE_KEY in node)) return out;
  const files = Array.isArray(node[INCLUDE_KEY]) ? (node[INCLUDE_KEY] as unknown[]) : [node[INCLUDE_KEY]];
  let included: unknown = {};
  for (const file of files) included = deepMerge(included, await includeFile(file, from, ctx));
  if (Object.keys(out).length === 0) return included;
  if (!isRecord(included)) throw unreadable(`${from}: an $include beside other keys must hold an object`, from);
  return deepMerge(included, out);
}

/** The parsed config document with every `$include` resolved; `null` when the file does not exist. */
export async function readOpenClawConfig(file: string, host: OpenClawHost): Promise<Record<string, unknown> | null> {
  if (!(await exists(file))) return null;
  const real = await realpath(file);
  const extra = (host.env["OPENCLAW_INCLUDE_ROOTS"] ?? "").split(path.delimiter).filter((root) => root.trim() !== "");
  const roots = [path.dirname(real), path.dirname(file), ...extra.map((root) => resolveUserPath(root, host))];
  const document = await resolveIncludes(await readJson5(file), file, { roots, chain: [real] });
  if (!isRecord(document)) throw unreadable(`${file} does not hold a JSON object`, file);
  return document;
}
