import { createHash, randomBytes } from "node:crypto";
import * as path from "node:path";

/** Agent ids as upstream keeps them: `[a-z0-9][a-z0-9_-]{0,63}`. */
export const AGENT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const DEFAULT_AGENT_ID = "main";

/**
 * Normalises an agent id the way upstream does before it reaches a path: lower-case; a valid id is
 * kept; otherwise every run of other characters becomes `-`, leading/trailing `-` are trimmed and
 * the result is capped at 64 characters; an empty result becomes `main`.
 */
export function normalizeAgentId(raw: string): string {
  const lower = raw.trim().toLowerCase();
  if (AGENT_ID_PATTERN.test(lower)) return lower;
  const replaced = lower
    .replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^[-_]+/, "")
    .slice(0, 64)
    .replace(/-+$/, "");
  return replaced === "" ? DEFAULT_AGENT_ID : replaced;
}

export interface AgentWorkspaceConfig {
  /** `<stateDir>`: `~/.openclaw`-like directory that holds per-agent workspaces by default. */
  stateDir: string;
  /** `agents.defaults.workspace`: the default agent's workspace and the root of the others'. */
  defaultsWorkspace?: string | undefined;
  /** The default agent's id (normalised). Default `main`. */
  defaultAgentId?: string | undefined;
  /** `$OPENCLAW_WORKSPACE_DIR`: the default agent's workspace when `defaultsWorkspace` is unset (upstream's order). */
  envWorkspace?: string | undefined;
  /** Explicit per-agent workspaces (`agents.entries[id].workspace`), keyed by normalised id. */
  agentWorkspaces?: Readonly<Record<string, string | undefined>> | undefined;
}

/**
 * Upstream's `resolveAgentWorkspaceDir`: an explicit per-agent workspace wins; the default agent
 * uses `agents.defaults.workspace`, else `$OPENCLAW_WORKSPACE_DIR` (`envWorkspace`), else
 * `<stateDir>/workspace`; another agent uses
 * `<agents.defaults.workspace>/<id>` when that root is set, else `<stateDir>/workspace-<id>`.
 */
export function resolveAgentWorkspaceDir(agentId: string, config: AgentWorkspaceConfig): string {
  const id = normalizeAgentId(agentId);
  const explicit = config.agentWorkspaces?.[id];
  if (explicit !== undefined && explicit !== "") return path.resolve(explicit);
  const defaultId = normalizeAgentId(config.defaultAgentId ?? DEFAULT_AGENT_ID);
  const root = config.defaultsWorkspace;
  if (id === defaultId) {
    if (root !== undefined && root !== "") return path.resolve(root);
    if (config.envWorkspace !== undefined && config.envWorkspace !== "") return path.resolve(config.envWorkspace);
    return path.resolve(config.stateDir, "workspace");
  }
  if (root !== undefined && root !== "") return path.resolve(root, id);
  return path.resolve(config.stateDir, `workspace-${id}`);
}

const SLUG_MAX = 32;

/**
 * A bounded, file-system-safe slug of a session key: NFKC, lower-case, runs outside `[a-z0-9_-]`
 * folded to `-`, at most 32 characters. Readability only: uniqueness comes from the hash.
 */
export function slugKey(key: string): string {
  const slug = key
    .normalize("NFKC")
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^[-_]+/, "")
    .slice(0, SLUG_MAX)
    .replace(/[-_]+$/, "");
  return slug === "" ? "session" : slug;
}

/** First 12 hex digits of sha256(key): distinct keys (`a/b`, `a_b`, `A/B`) get distinct names. */
export function keyHash(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex").slice(0, 12);
}

const RANDOM_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** `n` unpredictable lower-case alphanumerics (≈5.2 bits each). */
export function randomSuffix(n = 12): string {
  const bytes = randomBytes(n);
  let out = "";
  for (const b of bytes) out += RANDOM_ALPHABET[b % RANDOM_ALPHABET.length];
  return out;
}

/**
 * The directory name of one lease: `<slug>-<hash12>-<random12>`, at most 59 ASCII bytes whatever
 * the key. The raw key never reaches a path or tmp's options.
 */
export function leaseDirName(key: string): string {
  return `${slugKey(key)}-${keyHash(key)}-${randomSuffix(12)}`;
}

/** Names inside an ephemeral root that belong to the machinery, not to leases. */
export const TRASH_PREFIX = ".trash-";
export const INSTANCES_DIR = ".instances";
export const COLLECTOR_LOCK = ".collector";

/** True when `child` is `root` itself or below it, judged lexically after resolving both. */
export function isInside(root: string, child: string): boolean {
  const rel = path.relative(path.resolve(root), path.resolve(child));
  return rel === "" || (!escapes(rel) && !path.isAbsolute(rel));
}

/** True when `child` is exactly one level below `root`. */
export function isDirectChild(root: string, child: string): boolean {
  const rel = path.relative(path.resolve(root), path.resolve(child));
  return rel !== "" && !escapes(rel) && !path.isAbsolute(rel) && !rel.includes(path.sep);
}

function escapes(rel: string): boolean {
  return rel === ".." || rel.startsWith(`..${path.sep}`);
}
