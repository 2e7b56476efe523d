import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { removeLegacyOrphans, scanLegacyState } from "../../src/legacy/index.ts";
import { LATER, type OpenClawFixture, sandboxState, seedWorkspace } from "./openclaw-fixture.ts";

/** The narrowed scans the OpenClaw plugin runs: sandbox roots only, given sessions, bounded passes, work products. */
const scan = (fx: OpenClawFixture, extra: Parameters<typeof scanLegacyState>[0] = {}) => scanLegacyState({ dir: fx.stateDir, env: fx.env, homedir: fx.home, lockDir: fx.lockDir, now: LATER, ...extra });
const names = (entries: readonly { path: string }[]) => entries.map((entry) => path.basename(entry.path)).sort();

describe("legacy reclaim: narrowed scans", () => {
  it("sandboxesOnly leaves <stateDir>/workspace-* out and decides only workspace-<32 hex> names", async () => {
    const { fx, dirs } = await sandboxState();
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-gone-agent"));
    await seedWorkspace(fx, path.join(fx.stateDir, "sandboxes", "workspace-notahash"));
    expect(names((await scan(fx)).candidates)).toContain("workspace-gone-agent");
    const narrowed = await scan(fx, { sandboxesOnly: true });
    expect(names(narrowed.candidates)).toEqual(names([{ path: dirs["agent:main:gone"] as string }, { path: dirs["agent:main:tomb"] as string }]));
    expect([...narrowed.candidates, ...narrowed.kept].map((entry) => entry.path)).not.toContain(path.join(fx.stateDir, "sandboxes", "workspace-notahash"));
  });

  it("sessions narrows to the directories those sessions own, named as OpenClaw names them", async () => {
    const { fx, dirs } = await sandboxState();
    const only = await scan(fx, { sessions: [{ key: "agent:main:gone", agentId: "main" }] });
    expect(only.candidates.map((entry) => entry.path)).toEqual([dirs["agent:main:gone"]]);
    expect(only.kept).toEqual([]);
    const live = await scan(fx, { sessions: [{ key: "agent:main:alive", agentId: "main" }] });
    expect(live.candidates).toEqual([]);
    expect(live.kept.map((entry) => [entry.path, entry.code])).toEqual([[dirs["agent:main:alive"], "live-session"]]);
  });

  it("limit and after make bounded passes that together decide every directory once", async () => {
    const { fx } = await sandboxState();
    const all = await scan(fx, { sandboxesOnly: true });
    const seen: string[] = [];
    let after: string | undefined;
    for (let pass = 0; pass < 10; pass++) {
      const bounded = await scan(fx, { sandboxesOnly: true, limit: 3, after });
      seen.push(...[...bounded.candidates, ...bounded.kept].map((entry) => entry.path));
      after = bounded.next;
      if (after === undefined) break;
      expect(bounded.candidates.length + bounded.kept.length).toBe(3);
    }
    expect(after).toBeUndefined();
    expect(seen.sort()).toEqual([...all.candidates, ...all.kept].map((entry) => entry.path).sort());
  });

  it("includeUserFiles takes an orphan's work products with it, and the removal re-decides under the same rule", async () => {
    const { fx, dirs } = await sandboxState();
    const gone = dirs["agent:main:gone"] as string;
    await fs.writeFile(path.join(gone, "notes.md"), "mine\n");
    const strict = await scan(fx, { sandboxesOnly: true });
    expect(strict.kept.find((entry) => entry.path === gone)).toMatchObject({ code: "user-files", reason: "1 file not written by OpenClaw (notes.md)" });
    const lenient = await scan(fx, { sandboxesOnly: true, includeUserFiles: true });
    expect(lenient.rules.includeUserFiles).toBe(true);
    expect(lenient.candidates.map((entry) => entry.path)).toContain(gone);
    const removal = await removeLegacyOrphans(lenient, { env: fx.env, homedir: fx.home, lockDir: fx.lockDir, now: LATER });
    expect(removal.removed.map((entry) => entry.path)).toContain(gone);
    await expect(fs.stat(gone)).rejects.toMatchObject({ code: "ENOENT" });
    await expect(fs.stat(dirs["agent:main:alive"] as string)).resolves.toBeDefined();
  });
});
