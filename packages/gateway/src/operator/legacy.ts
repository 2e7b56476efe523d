import { lstat, readFile, readdir, realpath, stat } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import JSON5 from "json5";
import { DEFAULT_AGENT_ID, type DirIdentity, errnoCode, nodeFsPort, normalizeAgentId, resolveAgentWorkspaceDir, safeRemove } from "@ocgw/workspace";
import { GatewayError } from "../errors.ts";
import { createdAtOf, directorySize, mapLimit } from "./common.ts";

/** The trash tag of legacy removals: entries are renamed to `.trash-ocgw-legacy-<random>` next to where they were. */
export const LEGACY_TRASH_TAG = "ocgw-legacy";
const LEGACY_TRASH_NAME = /^\.trash-ocgw-legacy-[a-z0-9]{10}$/;
const CANDIDATE_PREFIX = "workspace-";

/** Options of {@link scanLegacyState}. */
export interface LegacyScanOptions {
  /** The OpenClaw state directory (e.g. `~/.openclaw`); `~` expands, relative paths resolve against `cwd`. */
  dir: string;
  /** Default: `process.env` (for OPENCLAW_WORKSPACE_DIR, which upstream's default agent honours). */
  env?: NodeJS.ProcessEnv | undefined;
  /** Default: `process.cwd()`. */
  cwd?: string | undefined;
  /** What `~` expands to. Default: `os.homedir()`. */
  homedir?: string | undefined;
  /** The clock, for ages. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** An agent whose workspace the scan protects. */
export interface LegacyAgent {
  readonly id: string;
  /** Its workspace as upstream's `resolveAgentWorkspaceDir` resolves it (stateDir = the scanned dir). */
  readonly workspace: string;
  readonly isDefault: boolean;
  /** `config`: listed in openclaw.json (or the implicit default); `agents-dir`: only has `<dir>/agents/<id>/`. */
  readonly source: "config" | "agents-dir";
}

/** A directory the scan proved orphaned: removable with {@link removeLegacyOrphans}. */
export interface LegacyCandidate {
  readonly path: string;
  /** `state` (`<dir>/workspace-*`), `sandboxes` (`<dir>/sandboxes/workspace-*`) or `trash` (a leftover of an interrupted removal). */
  readonly location: "state" | "sandboxes" | "trash";
  /** Recursive byte total, links not followed. */
  readonly sizeBytes: number;
  /** Birth time (or mtime), ms since epoch. */
  readonly createdAt: number | null;
  readonly ageMs: number | null;
  /** Device and inode at scan time: removal refuses anything else at this path. */
  readonly identity: DirIdentity;
}

/** Something that looked like a candidate and is left alone, with why. */
export interface LegacySkip {
  readonly path: string;
  readonly reason: string;
}

/** The result of {@link scanLegacyState}. Nothing was changed on disk. */
export interface LegacyScan {
  /** The scanned directory (its real path). */
  readonly dir: string;
  /** `<dir>/openclaw.json` when it exists, else null. */
  readonly configPath: string | null;
  readonly agents: LegacyAgent[];
  readonly candidates: LegacyCandidate[];
  readonly skipped: LegacySkip[];
  readonly totalBytes: number;
  /** Identities of the directories candidates sit in, checked again before each removal. */
  readonly parents: Readonly<Record<string, DirIdentity>>;
}

/** The result of {@link removeLegacyOrphans}. */
export interface LegacyRemoval {
  readonly removed: LegacyCandidate[];
  readonly removedBytes: number;
  /** Candidates left alone at removal time (changed, became a link, already gone). */
  readonly skipped: LegacySkip[];
  /** Candidates that could not be removed (permissions, I/O); a `.trash-ocgw-legacy-*` entry may remain. */
  readonly failed: LegacySkip[];
}

interface LegacyConfig {
  list: { id: string; workspace: string | undefined; isDefault: boolean }[];
  defaultsWorkspace: string | undefined;
}

function unreadable(detail: string, extra: Record<string, unknown> = {}, cause?: unknown): GatewayError {
  return new GatewayError("LEGACY_UNREADABLE", detail, { details: extra, ...(cause === undefined ? {} : { cause }) });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function identityOf(st: { dev: bigint; ino: bigint }): DirIdentity {
  return { dev: st.dev.toString(), ino: st.ino.toString() };
}

function sameIdentity(a: DirIdentity, b: DirIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** `~` → home; relative → against `base`. */
function expand(value: string, base: string, homedir: string): string {
  if (value === "~") return path.resolve(homedir);
  if (value.startsWith("~/")) return path.resolve(homedir, value.slice(2));
  return path.resolve(base, value);
}

function isInsideOrSame(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith(`..${path.sep}`) && rel !== ".." && !path.isAbsolute(rel));
}

/** Reads `<dir>/openclaw.json` (JSON5) for the agents; a missing file is no agents. Anything malformed is refused. */
async function readLegacyConfig(file: string): Promise<LegacyConfig | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return null;
    throw unreadable(`Cannot read ${file} (${errnoCode(error) ?? String(error)})`, { path: file }, error);
  }
  let document: unknown;
  try {
    document = text.trim() === "" ? {} : JSON5.parse(text);
  } catch (error) {
    const { lineNumber, columnNumber } = error as { lineNumber?: unknown; columnNumber?: unknown };
    const where = typeof lineNumber === "number" && typeof columnNumber === "number" ? ` at line ${lineNumber}, column ${columnNumber}` : "";
    const reason = error instanceof Error ? error.message.replace(/^JSON5: /, "").replace(/ at \d+:\d+$/, "") : String(error);
    throw unreadable(`${file} is not valid JSON5: ${reason}${where}`, { path: file }, error);
  }
  if (!isRecord(document)) throw unreadable(`${file} does not hold a JSON object`, { path: file });
  const agents = document["agents"];
  if (agents === undefined) return { list: [], defaultsWorkspace: undefined };
  if (!isRecord(agents)) throw unreadable(`${file}: agents is not an object, so the configured agents cannot be known`, { path: file });
  const defaults = agents["defaults"];
  const defaultsWorkspace = isRecord(defaults) && typeof defaults["workspace"] === "string" && defaults["workspace"] !== "" ? defaults["workspace"] : undefined;
  if (defaults !== undefined && isRecord(defaults) && defaults["workspace"] !== undefined && typeof defaults["workspace"] !== "string") {
    throw unreadable(`${file}: agents.defaults.workspace is not a string`, { path: file });
  }
  const rawList = agents["list"];
  if (rawList === undefined) return { list: [], defaultsWorkspace };
  if (!Array.isArray(rawList)) throw unreadable(`${file}: agents.list is not an array, so the configured agents cannot be known`, { path: file });
  const list = rawList.map((entry: unknown, index) => {
    if (!isRecord(entry) || typeof entry["id"] !== "string" || entry["id"].trim() === "") {
      throw unreadable(`${file}: agents.list[${index}] has no id, so its workspace cannot be known`, { path: file });
    }
    const workspace = entry["workspace"];
    if (workspace !== undefined && typeof workspace !== "string") throw unreadable(`${file}: agents.list[${index}].workspace is not a string`, { path: file });
    return { id: entry["id"], workspace: workspace === "" ? undefined : workspace, isDefault: entry["default"] === true };
  });
  return { list, defaultsWorkspace };
}

interface Protected {
  path: string;
  identity: DirIdentity | undefined;
  why: string;
}

async function protect(target: string, why: string): Promise<Protected[]> {
  const out: Protected[] = [{ path: path.resolve(target), identity: undefined, why }];
  try {
    // Followed on purpose: a configured workspace that is a link protects what it points at.
    const st = await stat(target, { bigint: true });
    const real = await realpath(target);
    out[0] = { path: path.resolve(target), identity: identityOf(st), why };
    if (real !== path.resolve(target)) out.push({ path: real, identity: identityOf(st), why });
  } catch {
    // Missing: protected by path alone.
  }
  return out;
}

/**
 * Scans an OpenClaw state directory for workspace directories that older gateways left behind,
 * changing nothing. Candidates are real directories (lstat: never a link) directly inside
 * `<dir>` named `workspace-*` and directly inside `<dir>/sandboxes` named `workspace-*` that are
 * NOT a configured agent's workspace (`openclaw.json` `agents.list[].workspace`, or the path
 * upstream's `resolveAgentWorkspaceDir` gives it with stateDir = `<dir>`), NOT `<dir>/workspace`,
 * NOT `workspace-<id>` for a configured id or one with a `<dir>/agents/<id>/` directory, and
 * neither the same directory as (through a link) nor a parent of any protected workspace.
 * Everything else that matched the names is listed in `skipped` with the reason.
 *
 * @throws GatewayError `LEGACY_UNREADABLE` when `<dir>` is missing or not a directory, or its
 *   openclaw.json cannot be read or parsed (the agents would be unknown, so nothing is proposed).
 */
export async function scanLegacyState(options: LegacyScanOptions): Promise<LegacyScan> {
  const env = options.env ?? process.env;
  const cwd = path.resolve(options.cwd ?? process.cwd());
  const homedir = options.homedir ?? os.homedir();
  const now = (options.now ?? Date.now)();
  const given = expand(options.dir, cwd, homedir);
  let dir: string;
  try {
    dir = await realpath(given);
    if (!(await stat(dir)).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
  } catch (error) {
    const why = errnoCode(error) === "ENOENT" ? "it does not exist" : errnoCode(error) === "ENOTDIR" ? "it is not a directory" : (errnoCode(error) ?? String(error));
    throw unreadable(`Cannot scan the OpenClaw state directory ${given}: ${why}`, { path: given }, error);
  }

  const configFile = path.join(dir, "openclaw.json");
  const config = await readLegacyConfig(configFile);
  const list = config?.list ?? [];
  const defaultsWorkspace = config?.defaultsWorkspace === undefined ? undefined : expand(config.defaultsWorkspace, cwd, homedir);
  const defaultAgentId = normalizeAgentId(list.find((entry) => entry.isDefault)?.id ?? list[0]?.id ?? DEFAULT_AGENT_ID);
  const agentWorkspaces: Record<string, string> = {};
  for (const entry of list) {
    if (entry.workspace !== undefined) agentWorkspaces[normalizeAgentId(entry.id)] = expand(entry.workspace, cwd, homedir);
  }
  const envWorkspace = env["OPENCLAW_WORKSPACE_DIR"];
  const workspaceConfig = {
    stateDir: dir,
    defaultsWorkspace,
    envWorkspace: envWorkspace !== undefined && envWorkspace !== "" ? expand(envWorkspace, cwd, homedir) : undefined,
    defaultAgentId,
    agentWorkspaces,
  };

  const configuredIds = new Set(list.map((entry) => normalizeAgentId(entry.id)));
  configuredIds.add(defaultAgentId);
  const agentsDirIds = new Set<string>();
  for (const name of await readdir(path.join(dir, "agents")).catch(() => [] as string[])) {
    const st = await lstat(path.join(dir, "agents", name)).catch(() => undefined);
    if (st?.isDirectory() === true) agentsDirIds.add(name);
  }

  const agents: LegacyAgent[] = [];
  for (const id of configuredIds) agents.push({ id, workspace: resolveAgentWorkspaceDir(id, workspaceConfig), isDefault: id === defaultAgentId, source: "config" });
  for (const raw of agentsDirIds) {
    const id = normalizeAgentId(raw);
    if (!configuredIds.has(id)) agents.push({ id, workspace: resolveAgentWorkspaceDir(id, workspaceConfig), isDefault: false, source: "agents-dir" });
  }

  const protectedList: Protected[] = [];
  for (const agent of agents) protectedList.push(...(await protect(agent.workspace, `the workspace of agent "${agent.id}"${agent.source === "agents-dir" ? ` (it has ${path.join(dir, "agents", agent.id)})` : ""}`)));
  // Relative workspace paths: upstream resolves them against its working directory, which is not ours to know; protect both readings.
  for (const entry of list) {
    if (entry.workspace !== undefined && !path.isAbsolute(entry.workspace) && !entry.workspace.startsWith("~")) {
      protectedList.push(...(await protect(path.resolve(dir, entry.workspace), `the workspace of agent "${normalizeAgentId(entry.id)}" (relative path read against ${dir})`)));
    }
  }
  protectedList.push(...(await protect(path.join(dir, "workspace"), "the default agent's workspace (<state>/workspace)")));
  if (workspaceConfig.defaultsWorkspace !== undefined) protectedList.push(...(await protect(workspaceConfig.defaultsWorkspace, "agents.defaults.workspace")));
  const reservedNames = new Map<string, string>();
  for (const id of configuredIds) reservedNames.set(`${CANDIDATE_PREFIX}${id}`, `agent "${id}" is configured in openclaw.json`);
  for (const raw of agentsDirIds) {
    const why = `agent "${raw}" has ${path.join(dir, "agents", raw)}`;
    reservedNames.set(`${CANDIDATE_PREFIX}${raw}`, why);
    reservedNames.set(`${CANDIDATE_PREFIX}${normalizeAgentId(raw)}`, why);
  }

  const parents: Record<string, DirIdentity> = { [dir]: identityOf(await lstat(dir, { bigint: true })) };
  const found: { path: string; location: LegacyCandidate["location"] }[] = [];
  const skipped: LegacySkip[] = [];
  const collect = (parent: string, names: string[], location: "state" | "sandboxes"): void => {
    for (const name of names.sort()) {
      if (LEGACY_TRASH_NAME.test(name)) found.push({ path: path.join(parent, name), location: "trash" });
      else if (name.startsWith(CANDIDATE_PREFIX)) found.push({ path: path.join(parent, name), location });
    }
  };
  collect(dir, await readdir(dir), "state");
  const sandboxes = path.join(dir, "sandboxes");
  const sandboxesStat = await lstat(sandboxes, { bigint: true }).catch(() => undefined);
  if (sandboxesStat?.isSymbolicLink() === true) skipped.push({ path: sandboxes, reason: "symlink: not followed, nothing inside it is considered" });
  else if (sandboxesStat?.isDirectory() === true) {
    parents[sandboxes] = identityOf(sandboxesStat);
    collect(sandboxes, await readdir(sandboxes), "sandboxes");
  }

  const candidates: LegacyCandidate[] = [];
  await mapLimit(found, 8, async (item) => {
    const reason = await whyKeep(item.path, item.location, protectedList, reservedNames);
    if (typeof reason === "string") {
      skipped.push({ path: item.path, reason });
      return;
    }
    const sizeBytes = (await directorySize(item.path)) ?? 0;
    const createdAt = await createdAtOf(item.path);
    candidates.push({ path: item.path, location: item.location, sizeBytes, createdAt, ageMs: createdAt === null ? null : Math.max(0, now - createdAt), identity: reason.identity });
  });
  candidates.sort((a, b) => a.path.localeCompare(b.path));
  skipped.sort((a, b) => a.path.localeCompare(b.path));
  return {
    dir,
    configPath: config === null ? null : configFile,
    agents,
    candidates,
    skipped,
    totalBytes: candidates.reduce((sum, candidate) => sum + candidate.sizeBytes, 0),
    parents,
  };
}

/** A reason to keep the entry, or its identity when it is provably an orphan. */
async function whyKeep(target: string, location: LegacyCandidate["location"], protectedList: readonly Protected[], reservedNames: ReadonlyMap<string, string>): Promise<string | { identity: DirIdentity }> {
  let st;
  try {
    st = await lstat(target, { bigint: true });
  } catch (error) {
    return `cannot inspect (${errnoCode(error) ?? String(error)})`;
  }
  if (st.isSymbolicLink()) return "symlink: never followed or removed";
  if (!st.isDirectory()) return "not a directory";
  const identity = identityOf(st);
  if (location === "trash") return { identity };
  const name = path.basename(target);
  if (location === "state") {
    const reserved = reservedNames.get(name);
    if (reserved !== undefined) return `kept: ${reserved}`;
  }
  for (const entry of protectedList) {
    if (entry.path === target) return `kept: ${entry.why}`;
    if (entry.identity !== undefined && sameIdentity(entry.identity, identity)) return `kept: the same directory as ${entry.why} (${entry.path})`;
    if (isInsideOrSame(target, entry.path)) return `kept: contains ${entry.why} (${entry.path})`;
  }
  return { identity };
}

/**
 * Removes exactly the candidates of a scan, each with @ocgw/workspace's `safeRemove`: lstat again
 * right before, refuse a link or a directory whose device/inode changed since the scan, rename to
 * a `.trash-ocgw-legacy-*` entry in the same parent (inside the scanned dir), check the renamed
 * entry is still the scanned one, then delete it without following links. A parent directory that
 * changed since the scan stops removal of everything in it. Never throws for one entry's trouble.
 */
export async function removeLegacyOrphans(scan: LegacyScan, options: { onProgress?: ((done: number, total: number, candidate: LegacyCandidate) => void) | undefined } = {}): Promise<LegacyRemoval> {
  const removed: LegacyCandidate[] = [];
  const skipped: LegacySkip[] = [];
  const failed: LegacySkip[] = [];
  let done = 0;
  for (const candidate of scan.candidates) {
    const parent = path.dirname(candidate.path);
    const expected = scan.parents[parent];
    const parentNow = await lstat(parent, { bigint: true }).catch(() => undefined);
    if (expected === undefined || parentNow === undefined || parentNow.isSymbolicLink() || !parentNow.isDirectory() || !sameIdentity(identityOf(parentNow), expected)) {
      skipped.push({ path: candidate.path, reason: `refused: ${parent} is not the directory that was scanned` });
    } else {
      const result = await safeRemove({ fs: nodeFsPort, root: parent, target: candidate.path, identity: candidate.identity, trashTag: LEGACY_TRASH_TAG });
      switch (result.outcome) {
        case "removed":
          removed.push(candidate);
          break;
        case "gone":
          skipped.push({ path: candidate.path, reason: "already gone" });
          break;
        case "refused":
          skipped.push({ path: candidate.path, reason: `refused: ${result.error.message}` });
          break;
        default:
          failed.push({ path: candidate.path, reason: result.error.message });
      }
    }
    options.onProgress?.(++done, scan.candidates.length, candidate);
  }
  return { removed, removedBytes: removed.reduce((sum, candidate) => sum + candidate.sizeBytes, 0), skipped, failed };
}
