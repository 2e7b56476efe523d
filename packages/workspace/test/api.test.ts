import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { describeError } from "../src/errors.ts";
import * as api from "../src/index.ts";
import { type ProviderSpec, WorkspaceError, createWorkspaceProvider, errnoCode, isWorkspaceError, workspaceErrorCatalog } from "../src/index.ts";
import { tempDir } from "./helpers.ts";

describe("createWorkspaceProvider", () => {
  it("builds each kind from a spec", async () => {
    const base = await tempDir();
    const persistent = await createWorkspaceProvider({ kind: "persistent", stateDir: path.join(base, "state") });
    const ephemeral = await createWorkspaceProvider({ kind: "ephemeral", root: path.join(base, "root"), seed: "none" });
    onTestFinished(() => ephemeral.close());
    const none = await createWorkspaceProvider({ kind: "none" });
    expect([persistent.kind, ephemeral.kind, none.kind]).toEqual(["persistent", "ephemeral", "none"]);
    expect(ephemeral.root).toBe(path.join(base, "root"));
    expect((await ephemeral.acquire({ key: "k" })).path?.startsWith(path.join(base, "root") + path.sep)).toBe(true);
  });

  it("refuses an unknown kind with WS_INVALID_OPTIONS", async () => {
    const error = await createWorkspaceProvider({ kind: "docker" } as unknown as ProviderSpec).catch((e: unknown) => e);
    expect(isWorkspaceError(error, "WS_INVALID_OPTIONS"), String(error)).toBe(true);
    expect((error as Error).message).toContain('"docker"');
  });
});

describe("errors", () => {
  it("carry a stable code, the catalogue's fix unless overridden, a path and a cause", () => {
    const cause = Object.assign(new Error("boom"), { code: "EIO" });
    const error = new WorkspaceError("WS_CREATE_FAILED", "Cannot create", { cause, path: "/x" });
    expect(error.name).toBe("WorkspaceError");
    expect(error.code).toBe("WS_CREATE_FAILED");
    expect(error.message).toBe(`Cannot create. ${workspaceErrorCatalog.WS_CREATE_FAILED.fix}`);
    expect(error.path).toBe("/x");
    expect(error.cause).toBe(cause);
    const custom = new WorkspaceError("WS_CLOSED", "Closed", { fix: "Open another" });
    expect(custom.message).toBe("Closed. Open another");
    expect("cause" in custom).toBe(false);
    expect(isWorkspaceError(custom)).toBe(true);
    expect(isWorkspaceError(custom, "WS_CREATE_FAILED")).toBe(false);
    expect(isWorkspaceError(new Error("plain"))).toBe(false);
  });

  it("errnoCode and describeError accept anything thrown", () => {
    expect(errnoCode(Object.assign(new Error("x"), { code: "ENOSPC" }))).toBe("ENOSPC");
    expect(errnoCode({ code: 28 })).toBeUndefined();
    expect(errnoCode(null)).toBeUndefined();
    expect(errnoCode("ENOSPC")).toBeUndefined();
    expect(describeError(new Error("message"))).toBe("message");
    expect(describeError("a string")).toBe("a string");
    expect(describeError(42)).toBe("42");
  });

  it("every code in the catalogue has a meaning and a fix", () => {
    for (const [code, entry] of Object.entries(workspaceErrorCatalog)) {
      expect(code).toMatch(/^WS_[A-Z_]+$/);
      expect(entry.meaning.length, code).toBeGreaterThan(10);
      expect(entry.fix.length, code).toBeGreaterThan(10);
    }
  });
});

describe("the package entry point", () => {
  it("exports the providers, the collector and the helpers", () => {
    for (const name of [
      "createEphemeralProvider",
      "createPersistentProvider",
      "createNoneProvider",
      "createWorkspaceProvider",
      "sweep",
      "safeRemove",
      "removeTree",
      "registerInstance",
      "createLivenessProbe",
      "leaseDirName",
      "normalizeAgentId",
      "resolveAgentWorkspaceDir",
      "readMarker",
      "ensurePrivateRoot",
      "verifyPrivateRoot",
      "defaultEphemeralRoot",
      "seedBootstrap",
      "seedFromDirectory",
      "isWorkspaceError",
    ] as const) {
      expect(typeof api[name], name).toBe("function");
    }
    expect(api.MARKER_NAME).toBe(".ocgw-lease.json");
    expect(api.DEFAULT_AGENT_ID).toBe("main");
    expect(api.DEFAULT_MAX_LEASES).toBe(10_000);
    expect(api.DEFAULT_STALE_MS).toBe(60_000);
    expect(Object.keys(api.BOOTSTRAP_FILES).length).toBe(7);
  });
});
