import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { makeDirs, startTestGateway } from "./lifecycle-harness.ts";

// Regression (issue 9, "unbounded growth"): close() closed the store under a collection that was
// still running, which then failed on the closed database.
describe("close() and a collection in flight", () => {
  it("close() waits for a running collection, which ends normally; a collection asked for after close is refused", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ stateDir: dirs.stateDir, root: dirs.root, idleTtlMs: 0 });
    await gateway.startupCollection;
    // Enough entries that the sweep is still walking when close() has done everything else.
    await Promise.all(Array.from({ length: 4000 }, (_, i) => fs.mkdir(path.join(dirs.root, `stray-${i}`))));
    const collection = gateway.collect();
    await gateway.close();
    const report = await collection;
    expect(report.sweep.reported).toBe(4000);
    await expect(gateway.collect()).rejects.toThrow(/collector is closed/);
  });
});
