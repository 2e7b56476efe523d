/** A small OpenClaw protocol v4 operator client: connect + handshake, calls, events, one chat turn. */
export {
  DEFAULT_CLIENT_TIMEOUT_MS,
  connectGateway,
  remoteErrorCode,
  remoteErrorOf,
  type CallOptions,
  type ConnectGatewayOptions,
  type EventListener,
  type GatewayClient,
  type GatewayEvent,
} from "./connect.ts";
export { DEFAULT_CHAT_TIMEOUT_MS, sendChat, type ChatOutcome, type SendChatOptions } from "./chat.ts";
export { resolveGatewayTarget, type GatewayTarget, type ResolveGatewayTargetOptions } from "./target.ts";
