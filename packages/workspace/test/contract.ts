import { lstat, rm, stat } from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { isWorkspaceError } from "../src/errors.ts";
import type { WorkspaceKind, WorkspaceProvider } from "../src/types.ts";
import { HOSTILE_KEYS, listTree, tempDir } from "./helpers.ts";

export interface ContractFlags {
  kind: WorkspaceKind;
  removesOnRelease: boolean;
  perKey: boolean;
  /** Leases carry a directory. */
  hasPath: boolean;
}

export interface ContractSubject {
  provider: WorkspaceProvider;
  /** Where the provider's directories appear: every lease path must be directly inside it. */
  leaseParent: string | null;
}

/**
 * The contract every WorkspaceProvider passes, `none` included. `create(base)` builds a provider
 * whose files all live under `base`, a fresh real temp directory: the suite checks that nothing
 * appears anywhere else below it.
 */
export function testWorkspaceProvider(name: string, create: (base: string) => Promise<ContractSubject>, flags: ContractFlags): void {
  describe(`WorkspaceProvider contract: ${name}`, () => {
    async function subject(): Promise<ContractSubject & { base: string }> {
      const base = await tempDir();
      const made = await create(base);
      return { ...made, base };
    }

    it("declares its capabilities", async () => {
      const { provider } = await subject();
      expect(provider.kind).toBe(flags.kind);
      expect(provider.removesOnRelease).toBe(flags.removesOnRelease);
      expect(provider.perKey).toBe(flags.perKey);
      await provider.close();
    });

    it("acquires a lease that lists until it is released", async () => {
      const { provider } = await subject();
      const lease = await provider.acquire({ key: "agent:main:hello", agentId: "Main" });
      expect(lease.kind).toBe(flags.kind);
      expect(lease.key).toBe("agent:main:hello");
      expect(lease.agentId).toBe("main");
      expect(lease.leaseId).toMatch(/^[0-9a-f-]{36}$/);
      if (flags.hasPath) {
        expect(lease.path).not.toBeNull();
        expect(path.isAbsolute(lease.path as string)).toBe(true);
        expect((await stat(lease.path as string)).isDirectory()).toBe(true);
      } else {
        expect(lease.path).toBeNull();
      }
      expect((await provider.list()).map((record) => record.leaseId)).toEqual([lease.leaseId]);
      await provider.release(lease, "delete");
      expect(await provider.list()).toEqual([]);
      await provider.close();
    });

    it("removes or keeps the directory on release, as declared", async () => {
      const { provider } = await subject();
      const lease = await provider.acquire({ key: "k" });
      const result = await provider.release(lease, "idle");
      expect(result.leaseId).toBe(lease.leaseId);
      expect(result.reason).toBe("idle");
      if (flags.hasPath) {
        const exists = await lstat(lease.path as string).then(() => true, () => false);
        expect(exists).toBe(!flags.removesOnRelease);
        expect(result.outcome).toBe(flags.removesOnRelease ? "removed" : "kept");
      } else {
        expect(result.outcome).toBe("none");
      }
      await provider.close();
    });

    it("releases idempotently: twice in a row and three times at once", async () => {
      const { provider } = await subject();
      const first = await provider.acquire({ key: "twice" });
      const a = await provider.release(first, "delete");
      const b = await provider.release(first, "delete");
      expect([a.outcome, b.outcome]).toEqual(flags.removesOnRelease ? ["removed", "gone"] : flags.hasPath ? ["kept", "kept"] : ["none", "none"]);

      const second = await provider.acquire({ key: "concurrent" });
      const results = await Promise.all([provider.release(second, "reset"), provider.release(second, "reset"), provider.release(second, "reset")]);
      expect(new Set(results.map((result) => result.outcome)).size).toBe(1);
      expect(results[0]?.error).toBeUndefined();
      expect(await provider.list()).toEqual([]);
      await provider.close();
    });

    if (flags.hasPath && flags.removesOnRelease) {
      it("treats a directory that vanished before release as released", async () => {
        const { provider } = await subject();
        const lease = await provider.acquire({ key: "vanishing" });
        await rm(lease.path as string, { recursive: true, force: true });
        const result = await provider.release(lease, "run-end");
        expect(result.outcome).toBe("gone");
        expect(await provider.list()).toEqual([]);
        await provider.close();
      });
    }

    it("calls beforeCreate before any directory exists, and a failing hook creates nothing", async () => {
      const { provider, base } = await subject();
      const before = listTree(base);
      const seen: { path: string | null; existed: boolean }[] = [];
      const lease = await provider.acquire({
        key: "hooked",
        beforeCreate: async (planned) => {
          expect(planned.key).toBe("hooked");
          seen.push({ path: planned.path, existed: planned.path !== null && (await lstat(planned.path).then(() => true, () => false)) });
        },
      });
      expect(seen).toEqual([{ path: lease.path, existed: false }]);
      await provider.release(lease, "delete");
      const afterFirst = listTree(base);

      await expect(
        provider.acquire({
          key: "refused-by-hook",
          beforeCreate: () => {
            throw new Error("ledger unavailable");
          },
        }),
      ).rejects.toThrow("ledger unavailable");
      expect(listTree(base)).toEqual(afterFirst);
      expect(await provider.list()).toEqual([]);
      if (!flags.hasPath) expect(listTree(base)).toEqual(before);
      await provider.close();
    });

    it("keeps hostile keys as strings: every lease inside its parent, distinct keys apart, nothing elsewhere", async () => {
      const { provider, base, leaseParent } = await subject();
      const leases = [];
      for (const key of HOSTILE_KEYS) leases.push(await provider.acquire({ key }));
      for (const [i, lease] of leases.entries()) {
        expect(lease.key).toBe(HOSTILE_KEYS[i]);
        if (!flags.hasPath) continue;
        const dir = lease.path as string;
        expect(path.dirname(dir)).toBe(leaseParent);
        const name = path.basename(dir);
        expect(name).toMatch(/^[a-z0-9_-]+$/);
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
        expect((await lstat(dir)).isDirectory()).toBe(true);
      }
      if (flags.hasPath && flags.perKey) {
        expect(new Set(leases.map((lease) => lease.path)).size).toBe(HOSTILE_KEYS.length);
      }
      // Everything that appeared under the test's base is the provider's parent directory or inside it.
      for (const entry of listTree(base)) {
        const full = path.join(base, entry);
        const allowed = leaseParent !== null && (full === leaseParent || full.startsWith(leaseParent + path.sep) || leaseParent.startsWith(full + path.sep));
        expect(allowed, `unexpected ${entry}`).toBe(true);
      }
      for (const lease of leases) await provider.release(lease, "delete");
      expect(await provider.list()).toEqual([]);
      await provider.close();
    });

    it("refuses keys that are not non-empty strings", async () => {
      const { provider } = await subject();
      const bad: unknown[] = ["", ["..", "x"], { toString: () => "../x" }, 42, null];
      for (const key of bad) {
        const error = await provider.acquire({ key: key as string }).catch((e: unknown) => e);
        expect(isWorkspaceError(error, "WS_INVALID_KEY"), `key ${JSON.stringify(key)}`).toBe(true);
      }
      expect(await provider.list()).toEqual([]);
      await provider.close();
    });

    it("takes no new leases once closed but still releases", async () => {
      const { provider } = await subject();
      const lease = await provider.acquire({ key: "before-close" });
      await provider.close();
      const error = await provider.acquire({ key: "after-close" }).catch((e: unknown) => e);
      expect(isWorkspaceError(error, "WS_CLOSED")).toBe(true);
      const result = await provider.release(lease, "shutdown");
      expect(result.error).toBeUndefined();
      await provider.close();
    });

    it("refuses a lease of another kind", async () => {
      const { provider } = await subject();
      const alien = { leaseId: "00000000-0000-4000-8000-000000000000", kind: flags.kind === "none" ? "ephemeral" : "none", key: "k", agentId: "main", path: null, createdAt: 0, created: false } as const;
      const error = await provider.release(alien, "delete").catch((e: unknown) => e);
      expect(isWorkspaceError(error, "WS_LEASE_MISMATCH")).toBe(true);
      await provider.close();
    });
  });
}
