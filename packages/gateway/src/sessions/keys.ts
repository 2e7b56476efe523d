import { GatewayError } from "../errors.ts";

/** Keys longer than this are refused, as upstream does. */
export const SESSION_KEY_MAX = 512;

export interface KeyContext {
  /** Configured agent ids (normalised). */
  agentIds: readonly string[];
  defaultAgentId: string;
  /** `session.mainKey`, default `main`. */
  mainKey: string;
}

export interface CanonicalKey {
  key: string;
  agentId: string;
  /** True for `agent:<id>:<mainKey>`: the agent's own main session. */
  isMain: boolean;
}

/** Upstream's words for an agent that is not configured (clients match on them). */
export function unknownAgent(agentId: string): GatewayError {
  return new GatewayError("UNKNOWN_AGENT", `Agent "${agentId}" no longer exists in configuration`, {
    fix: null,
    details: { code: "UNKNOWN_AGENT_ID", agentId },
  });
}

export function assertKnownAgent(agentId: string, context: KeyContext): string {
  const id = agentId.trim().toLowerCase();
  if (!context.agentIds.includes(id)) throw unknownAgent(id);
  return id;
}

/**
 * Canonicalises a session key as upstream does: trimmed and lower-cased; `global`/`unknown` kept;
 * the main key (`main`) → `agent:<agent>:<mainKey>`; `agent:<id>:<rest>` kept when both parts are
 * non-empty and the agent is configured; any other bare key → `agent:<agent>:<key>`, where
 * `<agent>` is `agentId` when given, else the default agent. A key is a string, never a path:
 * nothing here touches the file system. Unknown agents are refused before anything is created.
 */
export function canonicalizeKey(raw: string, context: KeyContext, agentIdParam?: string): CanonicalKey {
  const trimmed = raw.trim();
  if (trimmed.length === 0) throw invalidKey("must not be empty");
  if (trimmed.length > SESSION_KEY_MAX) throw invalidKey(`must not have more than ${SESSION_KEY_MAX} characters`);
  const lower = trimmed.toLowerCase();
  const agentFromParam = agentIdParam === undefined ? undefined : assertKnownAgent(agentIdParam, context);
  const owner = agentFromParam ?? context.defaultAgentId;
  if (lower === "global" || lower === "unknown") return { key: lower, agentId: owner, isMain: false };
  if (lower === context.mainKey) return { key: `agent:${owner}:${context.mainKey}`, agentId: owner, isMain: true };
  if (lower.startsWith("agent:")) {
    const rest = lower.slice("agent:".length);
    const colon = rest.indexOf(":");
    const agentId = colon === -1 ? rest : rest.slice(0, colon);
    const name = colon === -1 ? "" : rest.slice(colon + 1);
    if (agentId === "" || name === "") throw invalidKey(`"${trimmed}" is malformed: expected agent:<agentId>:<name>`);
    assertKnownAgent(agentId, context);
    if (agentFromParam !== undefined && agentFromParam !== agentId) {
      throw invalidKey(`"${trimmed}" belongs to agent "${agentId}", not to agentId "${agentFromParam}"`);
    }
    return { key: lower, agentId, isMain: name === context.mainKey };
  }
  return { key: `agent:${owner}:${lower}`, agentId: owner, isMain: false };
}

function invalidKey(why: string): GatewayError {
  return new GatewayError("INVALID_SESSION_KEY", `invalid session key: ${why}`);
}

/** The main session key of an agent. */
export function mainSessionKey(agentId: string, mainKey: string): string {
  return `agent:${agentId}:${mainKey}`;
}
