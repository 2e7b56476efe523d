import { lstat, readdir, realpath, stat } from "node:fs/promises";
import * as path from "node:path";
import type { DirIdentity } from "@ocgw/workspace";
import { GatewayError } from "../errors.ts";
import { type OpenClawHost, readOpenClawConfig, resolveConfigPath } from "./openclaw-config.ts";
import { type OpenClawAgent, resolveRoster } from "./roster.ts";
import { type GatewayProbe, probeOpenClawGateway } from "./running.ts";
import { type SandboxSession, agentSandboxNames, sessionSandboxNames } from "./sandbox-names.ts";
import { BOOTSTRAP_NAMES, type HashIndex, KNOWN_SEEDS, mergeIndexes, sha256File } from "./seeded.ts";
import { type AgentStore, listAgentDirs, readSessionStores } from "./session-store.ts";
import { type OpenClawStateDb, readStateDb } from "./state-db.ts";
import { readMountPoints } from "./tree.ts";

/**
 * Everything the legacy reclaim knows about one OpenClaw state dir, read once per scan (and once
 * again right before removal): its agents, the live sessions' sandbox names, what OpenClaw
 * recorded, and what proves a file's bytes OpenClaw's.
 */
export interface LegacyContext {
  readonly stateDir: string;
  readonly configPath: string;
  readonly configFound: boolean;
  readonly agents: readonly OpenClawAgent[];
  /** Every directory a sandbox workspace can be in: each agent's `workspaceRoot` and `<stateDir>/sandboxes`. */
  readonly sandboxRoots: readonly string[];
  readonly gateway: GatewayProbe;
  /** Sandbox directory names owned by a live session (not idle) or an agent, with the owner. */
  readonly ownedNames: ReadonlyMap<string, string>;
  /** Names owned only by sessions idle longer than `idleDays`, with the session key. */
  readonly idleNames: ReadonlyMap<string, string>;
  /** Stores that could not be read: while any exists, no sandbox directory is provably orphaned. */
  readonly storeProblems: readonly string[];
  readonly stateDb: OpenClawStateDb;
  /** Paths (and their identities, when they exist) that belong to a configured or known agent. */
  readonly protectedPaths: ReadonlyMap<string, { why: string; identity: DirIdentity | undefined }>;
  readonly bootstrap: HashIndex;
  readonly skills: HashIndex;
  readonly mounts: ReadonlySet<string>;
  readonly now: number;
}

export interface ContextOptions {
  /** The state dir's real path. */
  readonly stateDir: string;
  /** Other spellings of it (as given, `$OPENCLAW_STATE_DIR`): every one is hashed into sandbox names. */
  readonly stateDirAliases?: readonly string[] | undefined;
  readonly host: OpenClawHost;
  /** Reclaim sandbox workspaces of sessions idle longer than this many days. Default: never. */
  readonly idleDays?: number | undefined;
  /** Act even while an OpenClaw gateway runs on the state dir. */
  readonly force?: boolean | undefined;
  /** Where OpenClaw keeps lifecycle locks (tests). Default `/tmp`. */
  readonly lockDir?: string | undefined;
  readonly now: number;
}

function gatewayRunning(stateDir: string, probe: GatewayProbe): GatewayError {
  return new GatewayError("LEGACY_GATEWAY_RUNNING", `An OpenClaw gateway is running on ${stateDir} (${probe.evidence.join("; ")})`, { details: { path: stateDir, evidence: probe.evidence } });
}

/** Reads the state dir's config, stores and records. Throws LEGACY_GATEWAY_RUNNING unless forced. */
export async function buildLegacyContext(options: ContextOptions): Promise<LegacyContext> {
  const { stateDir, host } = options;
  const gateway = await probeOpenClawGateway(stateDir, { runtimeDir: options.lockDir });
  if (gateway.running && options.force !== true) throw gatewayRunning(stateDir, gateway);
  const configPath = await resolveConfigPath(stateDir, host);
  const document = await readOpenClawConfig(configPath, host);
  const agentDirs = await listAgentDirs(stateDir);
  const agents = resolveRoster({ stateDir, stateDirAliases: options.stateDirAliases, configPath, document, host, agentDirs });
  const stores = await readSessionStores(stateDir, [...new Set([...agentDirs, ...agents.map((agent) => agent.id)])]);
  const stateDb = await readStateDb(stateDir);
  const names = ownedSandboxNames(agents, stores, [...stateDb.workspacePaths], options);
  for (const name of stateDb.registryNames) names.owned.set(name, "a container in OpenClaw's sandbox registry");
  return {
    stateDir,
    configPath,
    configFound: document !== null,
    agents,
    sandboxRoots: [...new Set([path.join(stateDir, "sandboxes"), ...agents.map((agent) => agent.sandbox.workspaceRoot)])],
    gateway,
    ownedNames: names.owned,
    idleNames: names.idle,
    storeProblems: stores.flatMap((store) => ("error" in store ? [`${store.file} ${store.error}`] : [])),
    stateDb,
    protectedPaths: await protectedPaths(agents, stateDir),
    bootstrap: mergeIndexes(KNOWN_SEEDS.bootstrap, await agentBootstrapCopies(agents)),
    skills: mergeIndexes(KNOWN_SEEDS.skills, await skillSources(agents, stateDir)),
    mounts: await readMountPoints(),
    now: options.now,
  };
}

/**
 * Every sandbox directory name a session (live, or just deleted) could own: hashed with each
 * workspace its agent and its key's agent could have used, and every workspace path OpenClaw recorded.
 */
export function sandboxNamesOfSession(agents: readonly OpenClawAgent[], recorded: readonly string[], session: SandboxSession): string[] {
  const workspacesOf = (id: string): string[] => [...agents.filter((agent) => agent.id === id).flatMap((agent) => agent.workspaces), ...recorded];
  const keyAgent = /^agent:([^:]+):/.exec(session.key)?.[1];
  return sessionSandboxNames(session, [...workspacesOf(session.agentId), ...(keyAgent === undefined ? [] : workspacesOf(keyAgent))]);
}

/** Every name a live session or a known agent owns, hashing each workspace path it could have used (its agent's, and every path OpenClaw recorded). */
function ownedSandboxNames(agents: readonly OpenClawAgent[], stores: readonly AgentStore[], recorded: readonly string[], options: ContextOptions): { owned: Map<string, string>; idle: Map<string, string> } {
  const owned = new Map<string, string>();
  const idle = new Map<string, string>();
  for (const agent of agents) for (const name of agentSandboxNames(agent.id, [...agent.workspaces, ...recorded])) owned.set(name, `agent "${agent.id}" (scope agent)`);
  const idleBefore = options.idleDays === undefined ? undefined : options.now - options.idleDays * 86_400_000;
  for (const store of stores) {
    if ("error" in store) continue;
    for (const session of store.sessions) {
      const isIdle = idleBefore !== undefined && session.lastActiveAt !== null && session.lastActiveAt < idleBefore;
      for (const name of sandboxNamesOfSession(agents, recorded, session)) {
        if (!isIdle) owned.set(name, `session ${session.key}`);
        else if (!owned.has(name)) idle.set(name, session.key);
      }
    }
  }
  for (const name of owned.keys()) idle.delete(name);
  return { owned, idle };
}

async function protectedPaths(agents: readonly OpenClawAgent[], stateDir: string): Promise<Map<string, { why: string; identity: DirIdentity | undefined }>> {
  const out = new Map<string, { why: string; identity: DirIdentity | undefined }>();
  const add = async (target: string, why: string): Promise<void> => {
    if (out.has(target)) return;
    // Followed on purpose: a workspace that is a link protects what it points at.
    const st = await stat(target, { bigint: true }).catch(() => undefined);
    const identity = st === undefined ? undefined : { dev: st.dev.toString(), ino: st.ino.toString() };
    out.set(target, { why, identity });
    const real = await realpath(target).catch(() => target);
    if (real !== target && !out.has(real)) out.set(real, { why, identity });
  };
  for (const agent of agents) for (const workspace of agent.workspaces) await add(workspace, `a workspace of agent "${agent.id}"${agent.source === "agents-dir" ? ` (it has ${path.join(stateDir, "agents", agent.id)})` : ""}`);
  return out;
}

async function agentBootstrapCopies(agents: readonly OpenClawAgent[]): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const dir of new Set(agents.flatMap((agent) => agent.workspaces))) {
    for (const name of BOOTSTRAP_NAMES) {
      const file = path.join(dir, name);
      const st = await lstat(file).catch(() => undefined);
      if (st?.isFile() !== true || st.size > 4 * 1024 * 1024) continue;
      (out.get(name) ?? out.set(name, new Set()).get(name))?.add(await sha256File(file));
    }
  }
  return out;
}

/** The skill folders OpenClaw syncs into a sandbox besides its bundled ones: `<stateDir>/skills` and each agent workspace's `skills/`. */
async function skillSources(agents: readonly OpenClawAgent[], stateDir: string): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  const roots = new Set([path.join(stateDir, "skills"), ...agents.flatMap((agent) => agent.workspaces.map((dir) => path.join(dir, "skills")))]);
  let budget = 5_000;
  for (const root of roots) {
    const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile() || budget-- <= 0) continue;
      const file = path.join(entry.parentPath, entry.name);
      const st = await lstat(file).catch(() => undefined);
      if (st === undefined || st.size > 4 * 1024 * 1024) continue;
      const rel = path.relative(root, file).split(path.sep).join("/");
      (out.get(rel) ?? out.set(rel, new Set()).get(rel))?.add(await sha256File(file));
    }
  }
  return out;
}
