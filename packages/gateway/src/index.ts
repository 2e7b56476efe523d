export { startGateway, GATEWAY_VERSION, type GatewayHandle, type GatewayOptions } from "./gateway.ts";
export { GatewayError, gatewayErrorCatalog, toWireError, type GatewayErrorCode, type WireError } from "./errors.ts";
export * from "./config/index.ts";
export { openStore, type Store, type LeaseRecord, type SessionRecord, type WorkspaceMode } from "./store/index.ts";
export { canonicalizeKey, type CanonicalKey, type KeyContext } from "./sessions/keys.ts";
export type { CollectorReport } from "./collector.ts";
export { closeOnSignals } from "./signals.ts";
