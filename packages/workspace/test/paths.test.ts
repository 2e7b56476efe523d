import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { AGENT_ID_PATTERN, isDirectChild, isInside, leaseDirName, normalizeAgentId, resolveAgentWorkspaceDir, slugKey } from "../src/paths.ts";
import { HOSTILE_KEYS } from "./helpers.ts";

describe("normalizeAgentId", () => {
  it.each([
    ["main", "main"],
    ["ops", "ops"],
    ["a_b-c9", "a_b-c9"],
    ["0agent", "0agent"],
    ["Main", "main"],
    ["  Foo Bar!! ", "foo-bar"],
    ["---", "main"],
    ["", "main"],
    ["   ", "main"],
    ["!!!", "main"],
    ["a/b", "a-b"],
    ["../x", "x"],
    ["_lead", "lead"],
    ["Ünïcode Agent", "n-code-agent"],
  ])("%j → %j", (raw, expected) => {
    expect(normalizeAgentId(raw)).toBe(expected);
  });

  it("caps a 100-character id at 64 characters", () => {
    const id = normalizeAgentId("a".repeat(100));
    expect(id).toBe("a".repeat(64));
  });

  it("caps a long invalid id at 64 and trims the dash the cut leaves", () => {
    const id = normalizeAgentId(`${"b".repeat(63)} tail`);
    expect(id).toBe("b".repeat(63));
    expect(id).toMatch(AGENT_ID_PATTERN);
  });

  it("always returns an id matching the upstream pattern, even for hostile input", () => {
    for (const raw of [...HOSTILE_KEYS, "x".repeat(1000), "-", "__", "A-".repeat(50)]) {
      expect(normalizeAgentId(raw), JSON.stringify(raw.slice(0, 40))).toMatch(AGENT_ID_PATTERN);
    }
  });
});

describe("resolveAgentWorkspaceDir", () => {
  const stateDir = "/srv/state";

  it("an explicit per-agent workspace wins", () => {
    const config = { stateDir, defaultsWorkspace: "/ws", agentWorkspaces: { ops: "/elsewhere/ops", main: "/elsewhere/main" } };
    expect(resolveAgentWorkspaceDir("ops", config)).toBe("/elsewhere/ops");
    expect(resolveAgentWorkspaceDir("OPS", config)).toBe("/elsewhere/ops");
    expect(resolveAgentWorkspaceDir("main", config)).toBe("/elsewhere/main");
  });

  it("an empty explicit entry falls back to the default rules", () => {
    expect(resolveAgentWorkspaceDir("ops", { stateDir, agentWorkspaces: { ops: "" } })).toBe("/srv/state/workspace-ops");
  });

  it("the default agent uses defaults.workspace, else <stateDir>/workspace", () => {
    expect(resolveAgentWorkspaceDir("main", { stateDir, defaultsWorkspace: "/ws" })).toBe("/ws");
    expect(resolveAgentWorkspaceDir("main", { stateDir })).toBe("/srv/state/workspace");
    expect(resolveAgentWorkspaceDir("main", { stateDir, defaultsWorkspace: "" })).toBe("/srv/state/workspace");
    expect(resolveAgentWorkspaceDir("Boss", { stateDir, defaultAgentId: "boss" })).toBe("/srv/state/workspace");
    expect(resolveAgentWorkspaceDir("main", { stateDir, defaultAgentId: "boss" })).toBe("/srv/state/workspace-main");
  });

  it("another agent uses <defaults.workspace>/<id>, else <stateDir>/workspace-<id>", () => {
    expect(resolveAgentWorkspaceDir("ops", { stateDir, defaultsWorkspace: "/ws" })).toBe("/ws/ops");
    expect(resolveAgentWorkspaceDir("ops", { stateDir })).toBe("/srv/state/workspace-ops");
  });

  it("normalises ids before building the path: nothing escapes the state dir", () => {
    for (const raw of ["../x", "../../etc/passwd", "a/../../b", "..", "/abs", "x/../../../y", "Foo Bar!!"]) {
      const dir = resolveAgentWorkspaceDir(raw, { stateDir });
      expect(isInside(stateDir, dir), `${raw} → ${dir}`).toBe(true);
      expect(path.dirname(dir), raw).toBe(stateDir);
      const withRoot = resolveAgentWorkspaceDir(raw, { stateDir, defaultsWorkspace: "/ws" });
      expect(isInside("/ws", withRoot), `${raw} → ${withRoot}`).toBe(true);
    }
    expect(resolveAgentWorkspaceDir("../x", { stateDir })).toBe("/srv/state/workspace-x");
    expect(resolveAgentWorkspaceDir("../x", { stateDir, defaultsWorkspace: "/ws" })).toBe("/ws/x");
  });
});

describe("leaseDirName", () => {
  /** `<slug>-<hash12>`: everything but the 12 random characters and their dash. */
  const prefix = (name: string): string => name.slice(0, -13);

  it("is bounded to 59 bytes of [a-z0-9_-] for every hostile key", () => {
    for (const key of HOSTILE_KEYS) {
      const name = leaseDirName(key);
      const label = JSON.stringify(key.slice(0, 40));
      expect(Buffer.byteLength(name), label).toBeLessThanOrEqual(59);
      expect(name, label).toMatch(/^[a-z0-9_-]+$/);
      expect(name, label).toMatch(/-[0-9a-f]{12}-[a-z0-9]{12}$/);
      expect(name.startsWith("-") || name.startsWith("."), label).toBe(false);
    }
  });

  it("differs between two calls for one key but keeps the <slug>-<hash> prefix", () => {
    for (const key of HOSTILE_KEYS) {
      const a = leaseDirName(key);
      const b = leaseDirName(key);
      expect(a).not.toBe(b);
      expect(prefix(a)).toBe(prefix(b));
      expect(prefix(a).startsWith(`${slugKey(key)}-`)).toBe(true);
    }
  });

  it("keeps keys that slug alike apart: a/b, a_b and A/B", () => {
    const prefixes = ["a/b", "a_b", "A/B"].map((key) => prefix(leaseDirName(key)));
    expect(new Set(prefixes).size).toBe(3);
    expect(prefix(leaseDirName("a/b")).startsWith("a-b-")).toBe(true);
    expect(prefix(leaseDirName("A/B")).startsWith("a-b-")).toBe(true);
  });

  it("gives distinct prefixes to every distinct hostile key (NFC and NFD included)", () => {
    const prefixes = new Set(HOSTILE_KEYS.map((key) => prefix(leaseDirName(key))));
    expect(prefixes.size).toBe(new Set(HOSTILE_KEYS).size);
  });
});

describe("isInside and isDirectChild", () => {
  it("judge paths lexically", () => {
    expect(isInside("/r", "/r")).toBe(true);
    expect(isInside("/r", "/r/a/b")).toBe(true);
    expect(isInside("/r", "/r/../x")).toBe(false);
    expect(isInside("/r", "/rx")).toBe(false);
    expect(isInside("/r", "/r/..x")).toBe(true);
    expect(isDirectChild("/r", "/r/a")).toBe(true);
    expect(isDirectChild("/r", "/r")).toBe(false);
    expect(isDirectChild("/r", "/r/a/b")).toBe(false);
    expect(isDirectChild("/r", "/r/../a")).toBe(false);
    expect(isDirectChild("/r", "/other/a")).toBe(false);
  });
});
