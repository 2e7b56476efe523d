import { describe, expect, it } from "vitest";
import { chatTurn, connectAdmin, ledger, makeDirs, startTestGateway } from "./lifecycle-harness.ts";

// Regression (issue 9, "unbounded growth"): released ledger rows were never pruned, so the
// database grew by one row per implicit session forever.
describe("the ledger's history is bounded", () => {
  it("a collection prunes released rows older than workspace.gc.retainReleasedMs; younger ones stay", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ stateDir: dirs.stateDir, root: dirs.root, idleTtlMs: 0, retainReleasedMs: 60_000 });
    await gateway.startupCollection;
    const client = await connectAdmin(gateway.url);
    for (const key of ["a", "b", "c"]) await chatTurn(client, key, "hello");
    expect(ledger(gateway.store).map((row) => [row.state, row.outcome])).toEqual([
      ["released", "removed"],
      ["released", "removed"],
      ["released", "removed"],
    ]);
    await gateway.collect();
    expect(ledger(gateway.store), "younger than the retention: kept as history").toHaveLength(3);
    const zero = await startTestGateway({ stateDir: (await makeDirs()).stateDir, root: dirs.root, idleTtlMs: 0, retainReleasedMs: 0 });
    const other = await connectAdmin(zero.url);
    for (const key of ["e", "f"]) await chatTurn(other, key, "hello");
    expect(ledger(zero.store)).toHaveLength(2);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await zero.collect();
    expect(ledger(zero.store)).toEqual([]);
  });
});
