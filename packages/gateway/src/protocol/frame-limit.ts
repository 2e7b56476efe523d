/**
 * One socket's frame-size limit, raised after authentication. The server is created with the
 * pre-auth limit as ws's `maxPayload`, so ws refuses a larger frame from its header (close 1009)
 * before reading its payload; once a peer has authenticated, its own receiver gets the post-auth
 * limit. ws (8.x) has no public setter for one socket's limit: this reaches its receiver's
 * `_maxPayload`, and throws at once if that ever changes shape (a test pins the behaviour).
 */
import type { WebSocket } from "ws";

interface ReceiverShape {
  _maxPayload: number;
}

export function setFrameLimit(ws: WebSocket, maxBytes: number): void {
  const receiver = (ws as unknown as { _receiver?: Partial<ReceiverShape> | null })._receiver;
  if (receiver === null || receiver === undefined || typeof receiver._maxPayload !== "number") {
    throw new Error("ws has no per-socket receiver limit (_receiver._maxPayload) any more: update frame-limit.ts for this ws version");
  }
  receiver._maxPayload = maxBytes;
}
