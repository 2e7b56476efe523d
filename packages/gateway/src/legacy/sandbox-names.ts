import { createHash } from "node:crypto";
import { normalizeAgentId } from "@ocgw/workspace";

/**
 * OpenClaw 2026.9's naming of sandbox workspace directories (`src/agents/sandbox/shared.ts`),
 * computed forward: from a session (or an agent) to the directory names it owns. The names are
 * one-way hashes, so a directory is mapped to its owner only by computing every live owner's
 * names and looking the directory up; nothing is ever inferred from a name alone.
 */

/** The first 32 hex digits of sha256 of a UTF-8 string, as OpenClaw's `hashTextSha256(...).slice(0, 32)`. */
export function sha32(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex").slice(0, 32);
}

/** A sandbox workspace directory's name: `workspace-<32 hex>`. */
export const SANDBOX_DIR_NAME = /^workspace-[0-9a-f]{32}$/;

/** The directory name of a scope key (`slugifySessionKey` for keys that end in `:workspace:<32 hex>`). */
export function sandboxDirName(scopeKey: string): string {
  return `workspace-${sha32(scopeKey.trim())}`;
}

function workspaceSuffix(agentWorkspaceDir: string): string {
  return `:workspace:${sha32(agentWorkspaceDir)}`;
}

/** What a live session contributes: its key, its agent, and the `entry_json` fields that change its sandbox. */
export interface SandboxSession {
  readonly key: string;
  readonly agentId: string;
  /** `entry.spawnedWorkspaceDir` (used when `spawnedBy` is set), `entry.spawnedCwd`. */
  readonly spawnedWorkspaceDir?: string | undefined;
  readonly spawnedCwd?: string | undefined;
  /** `entry.createdActor.id` when the actor is a profile (the `sandbox: "required"` principal form). */
  readonly principalId?: string | undefined;
}

/**
 * Every directory name the session could own under any scope OpenClaw 2026.9 computes for it:
 * `session` (`<key>:workspace:<h>`), the required-session and principal forms of
 * `sandbox: "required"`, for each workspace the run could have hashed (`h`). Computing more names
 * than the session uses only ever protects more; the hashes are 128 bits, so a name computed for
 * a live session never matches another session's directory by chance.
 */
export function sessionSandboxNames(session: SandboxSession, agentWorkspaces: readonly string[]): string[] {
  const key = session.key.trim() || "main";
  const agent = normalizeAgentId(session.agentId);
  const workspaces = new Set(agentWorkspaces);
  if (session.spawnedWorkspaceDir !== undefined) workspaces.add(session.spawnedWorkspaceDir);
  if (session.spawnedCwd !== undefined) workspaces.add(session.spawnedCwd);
  const names: string[] = [];
  for (const workspace of workspaces) {
    const suffix = workspaceSuffix(workspace);
    names.push(sandboxDirName(`${key}${suffix}`));
    names.push(sandboxDirName(`agent:${agent}:required-session:${sha32(key)}${suffix}`));
    if (session.principalId !== undefined) names.push(sandboxDirName(`agent:${agent}:principal:${sha32(session.principalId)}${suffix}`));
  }
  return names;
}

/** The names an agent's `scope: "agent"` sandboxes use (`agent:<id>:workspace:<h>`): never orphaned while the agent is known. */
export function agentSandboxNames(agentId: string, agentWorkspaces: readonly string[]): string[] {
  const agent = normalizeAgentId(agentId);
  return [...new Set(agentWorkspaces)].map((workspace) => sandboxDirName(`agent:${agent}${workspaceSuffix(workspace)}`));
}
