import { stat } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { sandboxState } from "../../gateway/test/legacy/openclaw-fixture.ts";
import plugin, { registerReclaim } from "../src/index.ts";
import { type Recorded, recordingApi } from "./recording-api.ts";

/**
 * The plugin's behaviour on a synthetic OpenClaw 2026.9.6 state dir (the legacy reclaim's
 * fixture, real files and SQLite stores in a temp dir): what each `session_end` reason does, the
 * dry run, the version guard, the sweeper, and that nothing it meets is thrown into OpenClaw.
 */

const exists = (file: string) => stat(file).then(() => true, () => false);
const ONLY_ON_DELETE = { sweeper: { enabled: false } };

/** Registers, starts the service on `stateDir`, runs `body`, then stops (which waits for the queued work). */
async function withPlugin(recorded: Recorded, stateDir: string, body: () => void | Promise<void>): Promise<void> {
  registerReclaim(recorded.api);
  const [service] = recorded.services;
  expect(service?.id).toBe("ocgw-reclaim-sweeper");
  await service?.start({ stateDir });
  await body();
  await service?.stop?.({ stateDir });
}

describe("the ocgw-reclaim plugin", () => {
  it("is the entry OpenClaw loads: id, name, register", () => {
    expect(plugin.id).toBe("ocgw-reclaim");
    expect(plugin.register).toBe(registerReclaim);
  });

  it("registers nothing when OpenClaw only inspects plugins, and nothing but one error line for a bad config", () => {
    const discovery = recordingApi({ mode: "discovery" });
    registerReclaim(discovery.api);
    expect([discovery.hooks.length, discovery.services.length, discovery.lines.length]).toEqual([0, 0, 0]);
    const bad = recordingApi({ config: { sweeper: { intervalMinutes: -1 } } });
    registerReclaim(bad.api);
    expect([bad.hooks.length, bad.services.length]).toEqual([0, 0]);
    expect(bad.messages("error")).toEqual([expect.stringMatching(/^ocgw-reclaim: disabled: invalid plugins\.entries\.ocgw-reclaim\.config: sweeper\.intervalMinutes: /)]);
  });

  it("releases a deleted session's sandbox directory; never on reset, new, idle, daily, compaction or shutdown; keeps a live one", async () => {
    const { fx, dirs } = await sandboxState();
    const gone = dirs["agent:main:gone"] as string;
    const recorded = recordingApi({ config: ONLY_ON_DELETE });
    await withPlugin(recorded, fx.stateDir, () => {
      for (const reason of ["reset", "new", "idle", "daily", "compaction", "shutdown", "restart", "unknown", undefined]) recorded.sessionEnd({ sessionKey: "agent:main:gone", reason }, { agentId: "main" });
    });
    expect(await exists(gone), "no reason but deleted releases it").toBe(true);
    expect(recorded.messages().filter((line) => !line.startsWith("ocgw-reclaim: watching"))).toEqual([]);

    const again = recordingApi({ config: ONLY_ON_DELETE });
    await withPlugin(again, fx.stateDir, () => {
      again.sessionEnd({ sessionKey: "agent:main:gone", reason: "deleted" }, { agentId: "main", sessionKey: "agent:main:gone" });
      again.sessionEnd({ sessionKey: "agent:main:alive", reason: "deleted" }, {});
    });
    expect(await exists(gone)).toBe(false);
    expect(await exists(dirs["agent:main:alive"] as string), "a session still in the store keeps its directory").toBe(true);
    expect(again.messages("info")).toContainEqual(expect.stringMatching(new RegExp(`^ocgw-reclaim: removed ${gone} \\(orphan-sandbox: no session in OpenClaw's session store maps to it; \\d+ B\\) \\[session_end deleted agent:main:gone\\]$`)));
    expect(again.messages("info")).toContainEqual(expect.stringMatching(/^ocgw-reclaim: session_end deleted agent:main:alive: 1 checked, 0 removed \(0 B\), 0 planned only, 1 kept, 0 failed in \d+ ms$/));
  });

  it("on an OpenClaw release it was not tested with, disables deletions, says so once, and logs the plan", async () => {
    const { fx, dirs } = await sandboxState();
    const recorded = recordingApi({ config: ONLY_ON_DELETE, version: "2099.1.1" });
    await withPlugin(recorded, fx.stateDir, () => {
      recorded.sessionEnd({ sessionKey: "agent:main:gone", reason: "deleted" }, { agentId: "main" });
      recorded.sessionEnd({ sessionKey: "agent:main:tomb", reason: "deleted" }, { agentId: "main" });
    });
    expect(recorded.messages("error")).toEqual([expect.stringMatching(/^ocgw-reclaim: DELETIONS DISABLED\. OpenClaw 2099\.1\.1 is not a release this plugin was tested with \(2026\.9\.6\)/)]);
    for (const key of ["agent:main:gone", "agent:main:tomb"]) {
      expect(await exists(dirs[key] as string)).toBe(true);
      expect(recorded.messages("info")).toContainEqual(expect.stringMatching(new RegExp(`^ocgw-reclaim: would remove ${dirs[key]} \\(orphan-sandbox:.*; deletions disabled\\]$`)));
    }
    const allowed = recordingApi({ config: { ...ONLY_ON_DELETE, allowUntestedOpenClaw: true }, version: "2099.1.1" });
    await withPlugin(allowed, fx.stateDir, () => allowed.sessionEnd({ sessionKey: "agent:main:gone", reason: "deleted" }, { agentId: "main" }));
    expect(allowed.messages("warn")).toEqual([expect.stringMatching(/acting anyway because allowUntestedOpenClaw is set$/)]);
    expect(await exists(dirs["agent:main:gone"] as string)).toBe(false);
  });

  it("a dry run removes nothing and logs what it would remove", async () => {
    const { fx, dirs } = await sandboxState();
    const recorded = recordingApi({ config: { ...ONLY_ON_DELETE, dryRun: true } });
    await withPlugin(recorded, fx.stateDir, () => recorded.sessionEnd({ sessionKey: "agent:main:gone", reason: "deleted" }, { agentId: "main" }));
    expect(await exists(dirs["agent:main:gone"] as string)).toBe(true);
    expect(recorded.messages("info")).toContainEqual(expect.stringMatching(/^ocgw-reclaim: would remove .*\[session_end deleted agent:main:gone; dry run\]$/));
    expect(recorded.messages("info")[0]).toBe(`ocgw-reclaim: watching ${fx.stateDir}: release on session delete (dry run: nothing is removed)`);
  });

  it("the sweeper's first pass, soon after start, reclaims every orphan and keeps live and idle sessions' directories", async () => {
    const { fx, dirs } = await sandboxState();
    const recorded = recordingApi({ config: { onDelete: { enabled: false }, sweeper: { minAgeMinutes: 0 } } });
    expect(recorded.hooks).toHaveLength(0);
    await withPlugin(recorded, fx.stateDir, async () => {
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && !recorded.messages("info").some((line) => line.startsWith("ocgw-reclaim: sweep: "))) await new Promise((resolve) => setTimeout(resolve, 100));
    });
    expect(recorded.hooks, "onDelete disabled: no session_end hook").toHaveLength(0);
    expect(await exists(dirs["agent:main:gone"] as string)).toBe(false);
    expect(await exists(dirs["agent:main:tomb"] as string)).toBe(false);
    expect(await exists(dirs["agent:main:alive"] as string)).toBe(true);
    expect(await exists(dirs["agent:main:old"] as string), "idleDays is off by default").toBe(true);
    expect(recorded.messages("info")).toContainEqual(expect.stringMatching(/^ocgw-reclaim: sweep: 4 checked, 2 removed \(\d+ B\), 0 planned only, 2 kept, 0 failed in \d+ ms$/));
  });

  it("a bounded sweep goes on where the previous pass stopped, and idleDays takes an idle session's directory", async () => {
    const { fx, dirs } = await sandboxState();
    const recorded = recordingApi({ config: { onDelete: { enabled: false }, sweeper: { minAgeMinutes: 0, maxPerPass: 3, intervalMinutes: 0.001, idleDays: 30 } } });
    await withPlugin(recorded, fx.stateDir, async () => {
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && recorded.messages("info").filter((line) => /^ocgw-reclaim: sweep[ :]/.test(line)).length < 2) await new Promise((resolve) => setTimeout(resolve, 50));
    });
    const passes = recorded.messages("info").filter((line) => /^ocgw-reclaim: sweep[ :]/.test(line));
    expect(passes[0]).toMatch(/^ocgw-reclaim: sweep \(bounded; the next pass goes on\): 3 checked/);
    expect(passes[1]).toMatch(/^ocgw-reclaim: sweep: 1 checked/);
    for (const key of ["agent:main:gone", "agent:main:tomb", "agent:main:old"]) expect(await exists(dirs[key] as string), key).toBe(false);
    expect(await exists(dirs["agent:main:alive"] as string)).toBe(true);
  });

  it("never throws into OpenClaw: odd events are ignored, an unreadable state dir is said once and swallowed", async () => {
    const { fx } = await sandboxState();
    const missing = path.join(fx.base, "no-such-state");
    const recorded = recordingApi({ config: ONLY_ON_DELETE });
    await withPlugin(recorded, missing, () => {
      expect(() => recorded.sessionEnd(undefined as never, undefined as never)).not.toThrow();
      expect(() => recorded.sessionEnd({ reason: "deleted" }, {})).not.toThrow();
      for (let i = 0; i < 2; i++) recorded.sessionEnd({ sessionKey: "agent:main:gone", reason: "deleted" }, { agentId: "main" });
    });
    expect(recorded.messages("error")).toEqual([expect.stringMatching(/^ocgw-reclaim: OpenClaw's state cannot be read the way this plugin expects, so nothing is removed: Cannot scan the OpenClaw state directory .*no-such-state: it does not exist\./)]);
  });
});
