import * as path from "node:path";
import { normalizeAgentId } from "@ocgw/workspace";
import { z } from "zod";
import { GatewayError } from "../errors.ts";
import { isRecord } from "../util/guards.ts";
import { type OpenClawHost, resolveUserPath } from "./openclaw-config.ts";

/**
 * OpenClaw's agents as its config names them, in both roster forms (`agents.entries.<id>`, the
 * current one, and the older `agents.list: [{ id }]`; `entries` wins when both exist), with the
 * workspace and sandbox each one resolves to under OpenClaw 2026.9's rules
 * (`resolveAgentWorkspaceDir`, `resolveSandboxConfigForAgent`).
 */

const pathValue = z.string().nullish();
const sandboxShape = z.looseObject({
  mode: z.enum(["off", "non-main", "all"]).optional(),
  scope: z.enum(["session", "agent", "shared"]).optional(),
  perSession: z.boolean().optional(),
  workspaceRoot: pathValue,
});
const agentShape = z.looseObject({ id: z.string().optional(), workspace: pathValue, default: z.boolean().optional(), sandbox: sandboxShape.nullish() });
const documentShape = z.looseObject({
  env: z.looseObject({ vars: z.record(z.string(), z.unknown()).optional() }).nullish(),
  session: z.looseObject({ store: z.undefined({ error: "a custom session.store puts sessions where this reclaim does not read them" }).optional() }).nullish(),
  agents: z
    .looseObject({
      defaults: z.looseObject({ workspace: pathValue, sandbox: sandboxShape.nullish() }).nullish(),
      entries: z.record(z.string(), agentShape.nullish()).nullish(),
      list: z.array(agentShape.extend({ id: z.string().trim().min(1, "an agent in agents.list has no id") })).nullish(),
      ownership: z.string().optional(),
    })
    .nullish(),
});
type Document = z.infer<typeof documentShape>;
type SandboxShape = z.infer<typeof sandboxShape>;

/** An agent's sandbox settings, as OpenClaw resolves them (the agent's own over `agents.defaults.sandbox`). */
export interface SandboxSettings {
  readonly mode: "off" | "non-main" | "all";
  readonly scope: "session" | "agent" | "shared";
  readonly workspaceRoot: string;
}

export interface OpenClawAgent {
  readonly id: string;
  /** The workspace OpenClaw resolves for it (the first rule that matches). */
  readonly workspace: string;
  /** Every path it could resolve to under any rule: each is protected, and each is hashed into its sandbox names. */
  readonly workspaces: readonly string[];
  readonly isDefault: boolean;
  /** `config`: in the roster (or the implicit `main`); `agents-dir`: only has `<stateDir>/agents/<id>/`. */
  readonly source: "config" | "agents-dir";
  readonly sandbox: SandboxSettings;
}

interface RosterEntry {
  id: string;
  workspace: string | undefined;
  marked: boolean;
  sandbox: SandboxShape | undefined;
}

function unsupported(file: string, detail: string): GatewayError {
  return new GatewayError("LEGACY_UNSUPPORTED", `${file}: ${detail}`, { details: { path: file } });
}

/** Validates the parts of the document the reclaim reads; any other shape stops the scan. */
export function parseDocument(document: Record<string, unknown>, file: string): Document {
  const parsed = documentShape.safeParse(document);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw unsupported(file, `${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "unexpected shape"}`);
}

/** `${VAR}` substitution as OpenClaw applies it, from the environment and the config's `env` block. A variable it cannot resolve stops the scan. */
function substitute(value: string, vars: Readonly<Record<string, unknown>>, file: string, key: string): string {
  return value.replace(/\$?\$\{([A-Z_][A-Z0-9_]*)\}/g, (match, name: string) => {
    if (match.startsWith("$$")) return match.slice(1);
    const resolved = vars[name];
    if (typeof resolved === "string" && resolved !== "") return resolved;
    throw unsupported(file, `${key} uses \${${name}}, which is not set here, so the path OpenClaw uses cannot be known`);
  });
}

function configVars(document: Document, host: OpenClawHost): Record<string, unknown> {
  const block = isRecord(document.env) ? document.env : {};
  const direct = Object.fromEntries(Object.entries(block).filter(([, value]) => typeof value === "string"));
  return { ...direct, ...(block["vars"] as Record<string, unknown> | undefined), ...host.env };
}

function rosterEntries(document: Document): { entries: RosterEntry[]; form: "entries" | "list" | "none" } {
  const agents = document.agents;
  const toEntry = (id: string, raw: z.infer<typeof agentShape> | null | undefined): RosterEntry => ({
    id: normalizeAgentId(id),
    workspace: raw?.workspace?.trim() || undefined,
    marked: raw?.default === true,
    sandbox: raw?.sandbox ?? undefined,
  });
  if (agents?.entries !== undefined && agents.entries !== null) return { entries: Object.entries(agents.entries).map(([id, raw]) => toEntry(id, raw)), form: "entries" };
  if (agents?.list !== undefined && agents.list !== null) return { entries: agents.list.map((raw) => toEntry(raw.id, raw)), form: "list" };
  return { entries: [], form: "none" };
}

/** OpenClaw's default agent for workspaces: the one marked, the only one, `main` with no roster, the first of a list; else none. */
function defaultAgentId(entries: readonly RosterEntry[], form: "entries" | "list" | "none"): string | undefined {
  const marked = entries.filter((entry) => entry.marked);
  if (marked.length === 1) return marked[0]?.id;
  if (entries.length === 1) return entries[0]?.id;
  if (form === "list") return entries[0]?.id;
  return undefined;
}

function sandboxOf(own: SandboxShape | undefined, defaults: SandboxShape | undefined, stateDir: string, host: OpenClawHost, resolve: (value: string, key: string) => string): SandboxSettings {
  const pick = <K extends keyof SandboxShape>(key: K): SandboxShape[K] => own?.[key] ?? defaults?.[key];
  const perSession = pick("perSession");
  const scope = pick("scope") ?? (perSession === undefined ? "agent" : perSession ? "session" : "shared");
  const root = pick("workspaceRoot")?.trim();
  return { mode: pick("mode") ?? "off", scope, workspaceRoot: root ? resolveUserPath(resolve(root, "sandbox.workspaceRoot"), host) : path.join(stateDir, "sandboxes") };
}

export interface RosterInput {
  readonly stateDir: string;
  /**
   * Other paths of the same state dir (the path as given, `$OPENCLAW_STATE_DIR`, a link to it).
   * OpenClaw hashes workspace paths as it spelled them, never through realpath, so a sandbox name
   * computed from only one spelling could miss a live session's directory.
   */
  readonly stateDirAliases?: readonly string[] | undefined;
  readonly configPath: string;
  /** The parsed document (includes resolved), or null when there is no config file. */
  readonly document: Record<string, unknown> | null;
  readonly host: OpenClawHost;
  /** Agent ids that have `<stateDir>/agents/<id>/` (they have run, configured or not). */
  readonly agentDirs: readonly string[];
}

/** The built-in default workspace candidates (`OPENCLAW_WORKSPACE_DIR`, `<stateDir>/workspace`, the profile and home forms). */
function builtinDefaults(stateDirs: readonly string[], host: OpenClawHost): string[] {
  const out = [...stateDirs.map((dir) => path.join(dir, "workspace")), path.join(host.homedir, ".openclaw", "workspace")];
  const envDir = host.env["OPENCLAW_WORKSPACE_DIR"]?.trim();
  const profile = host.env["OPENCLAW_PROFILE"]?.trim();
  if (profile) out.unshift(path.join(host.homedir, `.openclaw-${profile}`, "workspace"));
  if (envDir) out.unshift(resolveUserPath(envDir, host));
  return out;
}

/** The agents of an OpenClaw state dir: the roster's, the implicit `main`, and those that only have an agents/ directory. */
export function resolveRoster(input: RosterInput): OpenClawAgent[] {
  const { stateDir, configPath, host } = input;
  const document = parseDocument(input.document ?? {}, configPath);
  const vars = configVars(document, host);
  const resolve = (value: string, key: string): string => substitute(value, vars, configPath, key);
  const { entries, form } = rosterEntries(document);
  if (form === "none" && document.agents?.ownership !== "explicit") entries.push({ id: "main", workspace: undefined, marked: false, sandbox: undefined });
  const defaultId = defaultAgentId(entries, form);
  const defaultsRaw = document.agents?.defaults?.workspace?.trim();
  const defaultsWorkspace = defaultsRaw ? resolveUserPath(resolve(defaultsRaw, "agents.defaults.workspace"), host) : undefined;
  const stateDirs = [...new Set([stateDir, ...(input.stateDirAliases ?? [])])];
  const builtin = builtinDefaults(stateDirs, host);
  const defaultsSandbox = document.agents?.defaults?.sandbox ?? undefined;
  const agent = (entry: RosterEntry, source: OpenClawAgent["source"]): OpenClawAgent => {
    const explicit = entry.workspace === undefined ? [] : explicitPaths(resolve(entry.workspace, `workspace of agent "${entry.id}"`), stateDir, configPath, host);
    const isDefault = entry.id === defaultId;
    // The first is what OpenClaw picks; the rest are protected too (the scanned dir is taken as its OPENCLAW_STATE_DIR).
    const asDefault = defaultsWorkspace === undefined ? builtin : [defaultsWorkspace, ...builtin];
    const nested = defaultsWorkspace === undefined ? [] : [path.join(defaultsWorkspace, entry.id)];
    const own = stateDirs.map((dir) => path.join(dir, `workspace-${entry.id}`));
    const first = explicit[0] ?? (isDefault ? asDefault[0] : undefined) ?? nested[0] ?? own[0];
    const workspaces = [...new Set([first, ...explicit, ...asDefault, ...nested, ...own].filter((dir): dir is string => dir !== undefined))];
    return { id: entry.id, workspace: first ?? path.join(stateDir, `workspace-${entry.id}`), workspaces, isDefault, source, sandbox: sandboxOf(entry.sandbox, defaultsSandbox, stateDir, host, resolve) };
  };
  const agents = entries.map((entry) => agent(entry, "config"));
  const known = new Set(agents.map((item) => item.id));
  for (const raw of input.agentDirs) {
    const id = normalizeAgentId(raw);
    if (known.has(id)) continue;
    known.add(id);
    agents.push(agent({ id, workspace: undefined, marked: false, sandbox: undefined }, "agents-dir"));
  }
  return agents;
}

/** An explicit workspace: as OpenClaw resolves it (against its cwd), and, for a relative path, against the state and config dirs too. */
function explicitPaths(value: string, stateDir: string, configPath: string, host: OpenClawHost): string[] {
  const resolved = resolveUserPath(value, host);
  if (path.isAbsolute(value) || value.startsWith("~")) return [resolved];
  return [...new Set([resolved, path.resolve(stateDir, value), path.resolve(path.dirname(configPath), value)])];
}
