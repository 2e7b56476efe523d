/**
 * The two heartbeats of open connections: a `tick` event every `tickIntervalMs` (to everyone,
 * no scope), and a WebSocket ping every `pingIntervalMs` that terminates a socket which did not
 * answer the previous one.
 */
import type { Broadcaster } from "./broadcast.ts";
import type { ProtocolLimits } from "./limits.ts";
import type { PeerRegistry } from "./peer.ts";

export interface KeepaliveDeps {
  limits: Required<ProtocolLimits>;
  peers: PeerRegistry;
  broadcast: Broadcaster["broadcast"];
  log: (line: string) => void;
}

function pingAll(deps: KeepaliveDeps): void {
  for (const peer of deps.peers.open.values()) {
    if (peer.phase !== "open") continue;
    if (!peer.alive) {
      deps.log(`gateway ws conn=${peer.conn?.connId ?? "-"} missed a pong; terminating`);
      peer.ws.terminate();
      continue;
    }
    peer.alive = false;
    try {
      peer.ws.ping();
    } catch (error) {
      deps.log(`gateway ws ping failed: ${(error as Error).message}`);
    }
  }
}

/** Starts both timers; the returned function stops them. */
export function startKeepalive(deps: KeepaliveDeps): () => void {
  const tickTimer = setInterval(() => {
    deps.broadcast("tick", { ts: Date.now() }, { scope: null });
  }, deps.limits.tickIntervalMs);
  const pingTimer = setInterval(() => pingAll(deps), deps.limits.pingIntervalMs);
  return () => {
    clearInterval(tickTimer);
    clearInterval(pingTimer);
  };
}
