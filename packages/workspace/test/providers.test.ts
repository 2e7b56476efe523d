import * as path from "node:path";
import { createEphemeralProvider } from "../src/providers/ephemeral.ts";
import { createNoneProvider } from "../src/providers/none.ts";
import { createPersistentProvider } from "../src/providers/persistent.ts";
import { testWorkspaceProvider } from "./contract.ts";

testWorkspaceProvider(
  "ephemeral",
  async (base) => {
    const root = path.join(base, "openclaw-test");
    return { provider: await createEphemeralProvider({ root }), leaseParent: root };
  },
  { kind: "ephemeral", removesOnRelease: true, perKey: true, hasPath: true },
);

testWorkspaceProvider(
  "persistent (agent layout)",
  async (base) => {
    const stateDir = path.join(base, "state");
    return { provider: createPersistentProvider({ stateDir }), leaseParent: stateDir };
  },
  { kind: "persistent", removesOnRelease: false, perKey: false, hasPath: true },
);

testWorkspaceProvider(
  "persistent (legacy per-session layout)",
  async (base) => {
    const stateDir = path.join(base, "state");
    return { provider: createPersistentProvider({ stateDir, layout: "session" }), leaseParent: stateDir };
  },
  { kind: "persistent", removesOnRelease: false, perKey: true, hasPath: true },
);

testWorkspaceProvider("none", async () => ({ provider: createNoneProvider(), leaseParent: null }), {
  kind: "none",
  removesOnRelease: false,
  perKey: false,
  hasPath: false,
});
