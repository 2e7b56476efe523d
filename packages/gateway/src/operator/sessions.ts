import type { GatewayClient } from "../client/connect.ts";

/** The fields of a `sessions.list` row that operator commands show. */
export interface SessionSummary {
  readonly key: string;
  readonly agentId: string;
  readonly workspaceMode: string;
  readonly status: string;
  readonly hasActiveRun: boolean;
  /** ms since epoch. */
  readonly updatedAt: number;
  readonly workspaceDir: string | null;
  readonly [field: string]: unknown;
}

interface SessionsPage {
  sessions: SessionSummary[];
  nextOffset: number | null;
}

/** Most sessions fetched, in pages of 1,000. */
export const MAX_LISTED_SESSIONS = 100_000;

/** Every session of a running gateway (most recently updated first), following `nextOffset`. */
export async function listAllSessions(client: GatewayClient, options: { max?: number } = {}): Promise<SessionSummary[]> {
  const max = options.max ?? MAX_LISTED_SESSIONS;
  const out: SessionSummary[] = [];
  let offset: number | null = 0;
  while (offset !== null && out.length < max) {
    const page: SessionsPage = await client.call<SessionsPage>("sessions.list", { limit: Math.min(1000, max - out.length), offset });
    out.push(...page.sessions);
    offset = page.sessions.length === 0 ? null : page.nextOffset;
  }
  return out;
}
