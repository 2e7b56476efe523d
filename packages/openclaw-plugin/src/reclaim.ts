import { type LegacyRemoval, type LegacyScan, type SandboxSession, removeLegacyOrphans, scanLegacyState } from "@ocgw/gateway/legacy";

/**
 * One reclaim: the legacy reclaim's scan over the sandbox roots (every proof as `ocgw workspaces
 * gc --legacy` applies it: the session is gone from OpenClaw's store, the tree is plain, it holds
 * nothing but what OpenClaw seeded), then, when allowed to act, its removal (decided again per
 * directory at the moment of removal, identity-checked, renamed to trash first). OpenClaw's
 * running gateway is this process, so the "a gateway runs on the state dir" refusal is waived.
 */
export interface ReclaimRequest {
  /** OpenClaw's state dir (the service context's `stateDir`). */
  readonly stateDir: string;
  /** Only the directories these (deleted) sessions could own; absent: every sandbox directory. */
  readonly sessions?: readonly SandboxSession[] | undefined;
  readonly minAgeMs: number;
  readonly idleDays?: number | undefined;
  readonly includeUserFiles: boolean;
  /** Bounded pass: at most this many directories, after `after`. */
  readonly limit?: number | undefined;
  readonly after?: string | undefined;
  /** False: plan only (dry run, or deletions disabled). */
  readonly act: boolean;
}

export interface ReclaimOutcome {
  readonly scan: LegacyScan;
  /** Undefined when it did not act or there was nothing to remove. */
  readonly removal: LegacyRemoval | undefined;
  readonly elapsedMs: number;
}

export async function reclaim(request: ReclaimRequest): Promise<ReclaimOutcome> {
  const started = performance.now();
  const scan = await scanLegacyState({
    dir: request.stateDir,
    force: true,
    sandboxesOnly: true,
    sessions: request.sessions,
    minAgeMs: request.minAgeMs,
    idleDays: request.idleDays,
    includeUserFiles: request.includeUserFiles,
    limit: request.limit,
    after: request.after,
  });
  const removal = request.act && scan.candidates.length > 0 ? await removeLegacyOrphans(scan) : undefined;
  return { scan, removal, elapsedMs: performance.now() - started };
}
