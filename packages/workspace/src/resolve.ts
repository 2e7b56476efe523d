import { WorkspaceError } from "./errors.ts";
import { type EphemeralProviderOptions, createEphemeralProvider } from "./providers/ephemeral.ts";
import { createNoneProvider, type NoneProviderOptions } from "./providers/none.ts";
import { type PersistentProviderOptions, createPersistentProvider } from "./providers/persistent.ts";
import type { WorkspaceProvider } from "./types.ts";

export type ProviderSpec =
  | ({ kind: "persistent" } & PersistentProviderOptions)
  | ({ kind: "ephemeral" } & EphemeralProviderOptions)
  | ({ kind: "none" } & NoneProviderOptions);

const KINDS = ["persistent", "ephemeral", "none"] as const;

/** The one place that turns a spec into a provider and checks that it declares what the core relies on. */
export async function createWorkspaceProvider(spec: ProviderSpec): Promise<WorkspaceProvider> {
  let provider: WorkspaceProvider;
  switch (spec.kind) {
    case "persistent":
      provider = createPersistentProvider(spec);
      break;
    case "ephemeral":
      provider = await createEphemeralProvider(spec);
      break;
    case "none":
      provider = createNoneProvider(spec);
      break;
    default:
      throw new WorkspaceError("WS_INVALID_OPTIONS", `Unknown provider kind ${JSON.stringify((spec as { kind: unknown }).kind)}; use one of ${KINDS.join(", ")}`);
  }
  for (const method of ["acquire", "release", "list", "close"] as const) {
    if (typeof provider[method] !== "function") {
      throw new WorkspaceError("WS_INVALID_OPTIONS", `The ${spec.kind} provider lacks ${method}()`);
    }
  }
  return provider;
}
