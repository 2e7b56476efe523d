import { lstat, readdir, realpath, stat } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { type DirIdentity, errnoCode } from "@ocgw/workspace";
import { GatewayError } from "../errors.ts";
import { mapLimit } from "../util/map-limit.ts";
import { type LegacyContext, buildLegacyContext, sandboxNamesOfSession } from "./context.ts";
import { type LegacyEntry, type LegacyItem, decideEntry } from "./decide.ts";
import { type OpenClawHost, openClawHost, resolveUserPath } from "./openclaw-config.ts";
import type { OpenClawAgent } from "./roster.ts";
import { SANDBOX_DIR_NAME, type SandboxSession } from "./sandbox-names.ts";

/** The trash tag of legacy removals: entries are renamed to `.trash-ocgw-legacy-<random>` next to where they were. */
export const LEGACY_TRASH_TAG = "ocgw-legacy";
const LEGACY_TRASH_NAME = /^\.trash-ocgw-legacy-[a-z0-9]{10}$/;
/** One hour: a directory changed more recently may be one a gateway is creating right now. */
export const DEFAULT_MIN_AGE_MS = 60 * 60_000;

/** Options of {@link scanLegacyState}. */
export interface LegacyScanOptions {
  /** The OpenClaw state directory; default as OpenClaw: `$OPENCLAW_STATE_DIR`, else `~/.openclaw`. `~` expands; relative paths resolve against `cwd`. */
  dir?: string | undefined;
  /** Default `process.env` (OPENCLAW_CONFIG_PATH, OPENCLAW_WORKSPACE_DIR, OPENCLAW_HOME, `${VAR}`s of the config). */
  env?: NodeJS.ProcessEnv | undefined;
  /** Default `process.cwd()`. */
  cwd?: string | undefined;
  /** What `~` expands to when neither OPENCLAW_HOME nor HOME is set. Default `os.homedir()`. */
  homedir?: string | undefined;
  /** A directory changed more recently than this is kept. Default {@link DEFAULT_MIN_AGE_MS} (1 h). */
  minAgeMs?: number | undefined;
  /** Also reclaim the sandbox workspace of a session idle longer than this many days. Default: off. */
  idleDays?: number | undefined;
  /** Scan and act even though an OpenClaw gateway is running on the state dir. */
  force?: boolean | undefined;
  /** Where OpenClaw keeps its lifecycle locks. Default `/tmp` (tests point it elsewhere). */
  lockDir?: string | undefined;
  /** The clock. Default `Date.now`. */
  now?: (() => number) | undefined;
  /** Called after each directory is decided. */
  onProgress?: ((done: number, total: number) => void) | undefined;
  /** Only the sandbox roots' `workspace-<32 hex>` directories (and interrupted removals there); `<stateDir>/workspace-<id>` is left out. Default false. */
  sandboxesOnly?: boolean | undefined;
  /** Only the directories these sessions (just deleted) could own, named as OpenClaw names them. Implies `sandboxesOnly`. */
  sessions?: readonly SandboxSession[] | undefined;
  /** Decide at most this many directories (in path order) per scan: a bounded pass. Default: all. */
  limit?: number | undefined;
  /** Start after this path (the previous bounded pass's `next`). */
  after?: string | undefined;
  /** Also reclaim orphans that hold work products (files OpenClaw did not write). Default false: they are kept. */
  includeUserFiles?: boolean | undefined;
}

/** Counts and bytes of one decision code. */
export interface LegacyTally {
  readonly count: number;
  readonly bytes: number;
}

/** The plan: what `--yes` removes (`candidates`) and what it keeps, with why. Nothing was changed on disk. */
export interface LegacyScan {
  /** The state dir's real path. */
  readonly dir: string;
  /** The spellings of it that were hashed too (as given, `$OPENCLAW_STATE_DIR`, `~/.openclaw`, when they lead to it). */
  readonly dirAliases: readonly string[];
  readonly configPath: string;
  readonly configFound: boolean;
  readonly agents: readonly OpenClawAgent[];
  readonly sandboxRoots: readonly string[];
  /** Set when an OpenClaw gateway was found running and `force` let the scan go on. */
  readonly gatewayRunning: readonly string[];
  readonly candidates: readonly LegacyEntry[];
  readonly kept: readonly LegacyEntry[];
  readonly totalBytes: number;
  /** Per decision code (`orphan-sandbox`, `user-files`, …): how many and how many bytes. */
  readonly byCode: Readonly<Record<string, LegacyTally>>;
  /** Identities of the directories candidates sit in, checked again before each removal. */
  readonly parents: Readonly<Record<string, DirIdentity>>;
  readonly warnings: readonly string[];
  /** The options the plan was made with, so removal re-decides under the same rules. */
  readonly rules: { readonly minAgeMs: number; readonly idleDays: number | null; readonly force: boolean; readonly includeUserFiles: boolean };
  /** Set when `limit` left directories undecided: pass it as `after` to go on. */
  readonly next: string | undefined;
}

function unreadableDir(given: string, error: unknown): GatewayError {
  const code = errnoCode(error);
  const why = code === "ENOENT" ? "it does not exist" : code === "ENOTDIR" ? "it is not a directory" : (code ?? String(error));
  return new GatewayError("LEGACY_UNREADABLE", `Cannot scan the OpenClaw state directory ${given}: ${why}`, { details: { path: given }, cause: error });
}

/** OpenClaw's view of the host, from the scan's options. */
function hostOf(options: LegacyScanOptions): OpenClawHost {
  return openClawHost(options.env ?? process.env, path.resolve(options.cwd ?? process.cwd()), options.homedir ?? os.homedir());
}

/** The state dir's real path, and the other spellings OpenClaw may have hashed into sandbox names. */
export async function resolveStateDir(options: LegacyScanOptions): Promise<{ real: string; aliases: string[] }> {
  const host = hostOf(options);
  const fromEnv = host.env["OPENCLAW_STATE_DIR"]?.trim();
  const given = resolveUserPath(options.dir ?? fromEnv ?? path.join(host.homedir, ".openclaw"), host);
  let real: string;
  try {
    real = await realpath(given);
    if (!(await stat(real)).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
  } catch (error) {
    throw unreadableDir(given, error);
  }
  const spellings = [given, ...(fromEnv ? [resolveUserPath(fromEnv, host)] : []), path.join(host.homedir, ".openclaw")];
  const aliases: string[] = [];
  for (const spelling of spellings) if ((await realpath(spelling).catch(() => undefined)) === real) aliases.push(spelling);
  return { real, aliases: [...new Set(aliases)] };
}

/** The context a scan or a removal decides with. */
export async function legacyContext(options: LegacyScanOptions, stateDir: { real: string; aliases: readonly string[] }): Promise<LegacyContext> {
  return buildLegacyContext({ stateDir: stateDir.real, stateDirAliases: stateDir.aliases, host: hostOf(options), idleDays: options.idleDays, force: options.force, lockDir: options.lockDir, now: (options.now ?? Date.now)() });
}

function identityOf(st: { dev: bigint; ino: bigint }): DirIdentity {
  return { dev: st.dev.toString(), ino: st.ino.toString() };
}

/** The directories to decide: `workspace-*` in the state dir (unless `sandboxesOnly`) and in each sandbox root, and our own trash entries. */
async function discover(ctx: LegacyContext, warnings: string[], sandboxesOnly: boolean): Promise<{ items: LegacyItem[]; parents: Record<string, DirIdentity> }> {
  const parents: Record<string, DirIdentity> = {};
  const items = new Map<string, LegacyItem>();
  const visit = async (dir: string, location: "state" | "sandboxes"): Promise<void> => {
    const st = await lstat(dir, { bigint: true }).catch(() => undefined);
    if (st === undefined) return;
    if (!st.isDirectory()) return void warnings.push(`${dir} is ${st.isSymbolicLink() ? "a symlink" : "not a directory"}: not followed, nothing inside it is considered`);
    parents[dir] = identityOf(st);
    for (const name of (await readdir(dir)).sort()) {
      const full = path.join(dir, name);
      const prior = items.get(full);
      if (LEGACY_TRASH_NAME.test(name)) items.set(full, { path: full, location: "trash" });
      else if (sandboxesOnly && !SANDBOX_DIR_NAME.test(name)) continue;
      else if (name.startsWith("workspace-") && prior === undefined) items.set(full, { path: full, location });
      else if (name.startsWith("workspace-") && prior?.location !== location) items.set(full, { path: full, location: "sandboxes", alsoState: true });
    }
  };
  if (!sandboxesOnly) await visit(ctx.stateDir, "state");
  for (const root of ctx.sandboxRoots) await visit(root, "sandboxes");
  return { items: [...items.values()].sort((a, b) => a.path.localeCompare(b.path)), parents };
}

/** The items a scan decides: only the given sessions' names, after `after`, at most `limit`. */
function select(ctx: LegacyContext, items: readonly LegacyItem[], options: LegacyScanOptions): { items: LegacyItem[]; next: string | undefined } {
  const recorded = [...ctx.stateDb.workspacePaths];
  const names = options.sessions === undefined ? undefined : new Set(options.sessions.flatMap((session) => sandboxNamesOfSession(ctx.agents, recorded, session)));
  const after = options.after;
  const wanted = items.filter((item) => (names === undefined || names.has(path.basename(item.path))) && (after === undefined || item.path.localeCompare(after) > 0));
  const limit = options.limit ?? wanted.length;
  const chosen = wanted.slice(0, Math.max(0, limit));
  return { items: chosen, next: chosen.length < wanted.length ? chosen.at(-1)?.path : undefined };
}

function tally(entries: readonly LegacyEntry[]): Record<string, LegacyTally> {
  const out: Record<string, LegacyTally> = {};
  for (const entry of entries) {
    const prior = out[entry.code] ?? { count: 0, bytes: 0 };
    out[entry.code] = { count: prior.count + 1, bytes: prior.bytes + entry.sizeBytes };
  }
  return out;
}

/**
 * Scans an OpenClaw state directory for the workspaces OpenClaw leaked, changing nothing. A
 * directory is a candidate only when OpenClaw's own state proves it orphaned (no configured agent
 * resolves to a `workspace-<id>`; no session that still exists maps to a sandbox
 * `workspace-<32 hex>`), it holds nothing but what OpenClaw seeded, it is a plain tree of ours,
 * and it has not changed for `minAgeMs`. Everything else is kept, with the reason.
 *
 * @throws GatewayError `LEGACY_UNREADABLE` (no such dir; a config that cannot be read),
 *   `LEGACY_UNSUPPORTED` (a config shape it does not understand), `LEGACY_GATEWAY_RUNNING`
 *   (an OpenClaw gateway runs on the dir and `force` is not set). Nothing is removed in any case.
 */
export async function scanLegacyState(options: LegacyScanOptions = {}): Promise<LegacyScan> {
  const stateDir = await resolveStateDir(options);
  const ctx = await legacyContext(options, stateDir);
  const warnings = ctx.stateDb.problem === undefined ? [] : [ctx.stateDb.problem];
  const minAgeMs = options.minAgeMs ?? DEFAULT_MIN_AGE_MS;
  const includeUserFiles = options.includeUserFiles === true;
  const found = await discover(ctx, warnings, options.sandboxesOnly === true || options.sessions !== undefined);
  const { parents } = found;
  const { items, next } = select(ctx, found.items, options);
  let done = 0;
  const entries = await mapLimit(items, 4, async (item) => {
    const entry = await decideEntry(ctx, item, { minAgeMs, includeUserFiles });
    options.onProgress?.(++done, items.length);
    return entry;
  });
  const candidates = entries.filter((entry) => entry.action === "remove");
  return {
    dir: stateDir.real,
    dirAliases: stateDir.aliases,
    configPath: ctx.configPath,
    configFound: ctx.configFound,
    agents: ctx.agents,
    sandboxRoots: ctx.sandboxRoots,
    gatewayRunning: ctx.gateway.evidence,
    candidates,
    kept: entries.filter((entry) => entry.action === "keep"),
    totalBytes: candidates.reduce((sum, entry) => sum + entry.sizeBytes, 0),
    byCode: tally(entries),
    parents,
    warnings,
    rules: { minAgeMs, idleDays: options.idleDays ?? null, force: options.force === true, includeUserFiles },
    next,
  };
}
