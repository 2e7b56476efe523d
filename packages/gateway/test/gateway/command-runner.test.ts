/**
 * The command runner inside a real gateway: the program runs in the session's workspace, and
 * whatever ends a run or a session kills its whole process group (background jobs included)
 * before the workspace is removed. Real `sh` processes; pids read from the chat deltas.
 */
import { existsSync, realpathSync, statSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import type { TestClient } from "../protocol/helpers.ts";
import {
  LONG_HANG_MS,
  call,
  chatEvents,
  chatSend,
  chatTurn,
  connectAdmin,
  leaseEntries,
  ledger,
  makeDirs,
  processAlive,
  processesWithCwdUnder,
  startTestGateway,
  waitForTerminals,
  waitUntil,
} from "./lifecycle-harness.ts";
import { type EscapeKind, cwdOf, environNames, escapeScript, processGroupOf } from "../runners/helpers.ts";

/** Prints its own pid, starts a grandchild that keeps appending to keep.txt in the cwd, prints its pid, waits. */
const KEEP_WRITING = "echo $$; (while :; do echo x >> keep.txt; sleep 0.05; done) & echo $!; wait";

async function commandGateway(script: string) {
  const dirs = await makeDirs();
  const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000, runner: { kind: "command", command: { argv: ["sh", "-c", script] } } });
  const client = await connectAdmin(gateway.url);
  return { dirs, gateway, client };
}

/** Kills (by pid) whatever the test's script left running, should an assertion fail first. */
function killOnFinish(pids: readonly number[]): void {
  onTestFinished(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone, as it should be
      }
    }
  });
}

/** Waits until the run's deltas have carried both pids (the shell's, then the grandchild's). */
async function readPids(client: TestClient, runId: string): Promise<[number, number]> {
  let pids: number[] = [];
  await waitUntil(() => {
    const text = chatEvents(client, runId)
      .filter((event) => event.state === "delta")
      .map((event) => event.deltaText ?? "")
      .join("");
    pids = text
      .split("\n")
      .slice(0, -1)
      .map((line) => Number(line.trim()))
      .filter((pid) => Number.isInteger(pid) && pid > 0);
    return pids.length >= 2;
  }, "both pids in the run's deltas");
  const [shell, grandchild] = pids as [number, number];
  killOnFinish([grandchild, shell]);
  return [shell, grandchild];
}

/** Waits for the run's first line ("$$" then one pid per escape), kills them all by pid when the test finishes, and checks that each escaped. */
async function readEscapes(client: TestClient, runId: string, kinds: readonly EscapeKind[]): Promise<[number, number[]]> {
  let numbers: number[] = [];
  await waitUntil(() => {
    const text = chatEvents(client, runId)
      .filter((event) => event.state === "delta")
      .map((event) => event.deltaText ?? "")
      .join("");
    if (!text.includes("\n")) return false;
    numbers = (text.split("\n")[0] ?? "").trim().split(/\s+/).map(Number);
    return true;
  }, "the pids in the run's first line");
  expect(numbers.every((pid) => Number.isInteger(pid) && pid > 1)).toBe(true);
  expect(numbers).toHaveLength(1 + kinds.length);
  killOnFinish(numbers);
  const [shell, ...escaped] = numbers as [number, ...number[]];
  for (const [index, kind] of kinds.entries()) {
    const pid = escaped[index] as number;
    expect(await processAlive(pid), `${kind} ${pid} runs`).toBe(true);
    expect(processGroupOf(pid), `${kind} ${pid} left the group`).not.toBe(shell);
    if (kind.endsWith("out")) await waitUntil(() => cwdOf(pid) === "/", `${kind} to chdir to /`);
    if (kind.includes("cleared-env")) expect(environNames(pid).filter((name) => name.startsWith("OCGW_")), `${kind} ${pid} environment`).toEqual([]);
  }
  return [shell, escaped];
}

function fileSize(file: string): number {
  return statSync(file, { throwIfNoEntry: false })?.size ?? 0;
}

describe("command runner in a gateway", () => {
  it("chat.abort kills the program and its background grandchild; the workspace stays (60 s TTL)", async () => {
    const { dirs, gateway, client } = await commandGateway(KEEP_WRITING);
    const ack = await chatSend(client, "abort-me", "go");
    const [shell, grandchild] = await readPids(client, ack.runId);
    const [row] = ledger(gateway.store, "agent:main:abort-me");
    const dir = row?.path as string;
    const keep = path.join(dir, "keep.txt");
    await waitUntil(() => fileSize(keep) > 0, "the grandchild to write into keep.txt");
    expect(await processAlive(grandchild)).toBe(true);

    expect(await call(client, "chat.abort", { sessionKey: "abort-me" })).toMatchObject({ aborted: true, runIds: [ack.runId] });
    const terminal = (await waitForTerminals(client, [ack.runId])).get(ack.runId);
    expect(terminal?.state).toBe("aborted");

    await waitUntil(async () => !(await processAlive(shell)) && !(await processAlive(grandchild)), "both processes to be dead");
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(gateway.store.getLease(row?.leaseId as string)?.state).toBe("live");
    const size = fileSize(keep);
    expect(size).toBeGreaterThan(0);
    // The writer wrote every 50 ms; after several times that, nothing has been appended.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(fileSize(keep)).toBe(size);
    expect(await processesWithCwdUnder(dirs.root)).toEqual([]);
  });

  it("sessions.delete during a run kills every process of the session before the directory goes", async () => {
    const { dirs, gateway, client } = await commandGateway(KEEP_WRITING);
    const ack = await chatSend(client, "delete-me", "go");
    const [shell, grandchild] = await readPids(client, ack.runId);
    const [row] = ledger(gateway.store, "agent:main:delete-me");
    const dir = row?.path as string;
    await waitUntil(() => fileSize(path.join(dir, "keep.txt")) > 0, "the grandchild to write into keep.txt");
    expect((await processesWithCwdUnder(dir)).length).toBeGreaterThan(0);

    expect(await call(client, "sessions.delete", { key: "delete-me" })).toMatchObject({ ok: true, deleted: true });

    expect(await processAlive(shell)).toBe(false);
    expect(await processAlive(grandchild)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    // A survivor would still have its cwd in the (renamed, unlinked) tree under the root.
    expect(await processesWithCwdUnder(dirs.root)).toEqual([]);
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(gateway.store.getLease(row?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "delete", outcome: "removed" });
    const terminal = (await waitForTerminals(client, [ack.runId])).get(ack.runId);
    expect(terminal?.state).toBe("aborted");
  });

  it("sessions.delete after the run ended still kills a background job that outlived it, then removes the directory", async () => {
    // The job's output goes elsewhere, so the run ends (final) while the job keeps writing.
    const { dirs, gateway, client } = await commandGateway("(while :; do echo x >> keep.txt; sleep 0.05; done) >/dev/null 2>&1 & echo $$; echo $!");
    const ack = await chatSend(client, "linger", "go");
    const [shell, grandchild] = await readPids(client, ack.runId);
    expect((await waitForTerminals(client, [ack.runId])).get(ack.runId)?.state).toBe("final");
    const [row] = ledger(gateway.store, "agent:main:linger");
    const dir = row?.path as string;
    await waitUntil(() => fileSize(path.join(dir, "keep.txt")) > 0, "the background job to write into keep.txt");
    await waitUntil(async () => !(await processAlive(shell)), "the shell to exit");
    expect(await processAlive(grandchild)).toBe(true);

    expect(await call(client, "sessions.delete", { key: "linger" })).toMatchObject({ ok: true, deleted: true });

    expect(await processAlive(grandchild)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(await processesWithCwdUnder(dirs.root)).toEqual([]);
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(gateway.store.getLease(row?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "delete", outcome: "removed" });
  });

  for (const method of ["sessions.delete", "sessions.reset"] as const) {
    it(`regression: a run sent right after ${method} during a run got the workspace being released and was killed with it`, async () => {
      // "slow" holds its run until killed; anything else prints where it runs and exits 0.
      const { dirs, gateway, client } = await commandGateway('msg=$(cat); pwd -P; if [ "$msg" = slow ]; then sleep 30; fi');
      const first = await chatSend(client, "handover", "slow");
      await waitUntil(() => chatEvents(client, first.runId).some((event) => event.state === "delta"), "the first run's program to start");
      const [old] = ledger(gateway.store, "agent:main:handover");
      const oldDir = old?.path as string;

      // One burst: the second run is admitted while the first is being aborted, queued behind it.
      client.sendJson({ type: "req", id: "handover-end", method, params: { key: "handover" } });
      client.sendJson({ type: "req", id: "handover-send", method: "chat.send", params: { sessionKey: "handover", message: "after", idempotencyKey: "handover-next" } });
      const answers = await Promise.all(["handover-end", "handover-send"].map((id) => client.next((frame) => frame.type === "res" && frame.id === id, LONG_HANG_MS)));
      expect(answers.map((res) => res.ok)).toEqual([true, true]);

      const terminals = await waitForTerminals(client, [first.runId, "handover-next"]);
      expect(terminals.get(first.runId)?.state).toBe("aborted");
      // It used to take the old workspace and end "error" (RUNNER_ABORTED): the release killed it.
      const next = terminals.get("handover-next");
      expect(next?.state).toBe("final");
      const rows = ledger(gateway.store, "agent:main:handover");
      expect(rows).toHaveLength(2);
      expect(rows[0]).toMatchObject({ leaseId: old?.leaseId, state: "released", releaseReason: method === "sessions.delete" ? "delete" : "reset", outcome: "removed" });
      expect(rows[1]?.state).toBe("live");
      const newDir = rows[1]?.path as string;
      expect(newDir).not.toBe(oldDir);
      expect(next?.["message"]).toMatchObject({ content: [{ type: "text", text: `${realpathSync(newDir)}\n` }] });
      expect(existsSync(oldDir)).toBe(false);
      expect(await leaseEntries(dirs.root)).toEqual([path.basename(newDir)]);
    });
  }

  it("runs the program in the lease directory, and in / with workspace: false", async () => {
    const { gateway, client } = await commandGateway("pwd -P");

    const inWorkspace = await chatTurn(client, "where", "pwd");
    expect(inWorkspace.state).toBe("final");
    const [row] = ledger(gateway.store, "agent:main:where");
    expect(row?.kind).toBe("ephemeral");
    expect(path.dirname(row?.path as string)).toBe(gateway.ephemeralRoot);
    expect(inWorkspace["message"]).toMatchObject({ content: [{ type: "text", text: `${realpathSync(row?.path as string)}\n` }] });

    const withoutWorkspace = await chatTurn(client, "nowhere", "pwd", { workspace: false });
    expect(withoutWorkspace.state).toBe("final");
    expect(withoutWorkspace["message"]).toMatchObject({ content: [{ type: "text", text: "/\n" }] });
    expect(ledger(gateway.store, "agent:main:nowhere").filter((lease) => lease.path !== null)).toEqual([]);
  });

  const ESCAPE = "regression: processes escaped their workspace (setsid / double fork)";
  const KINDS = ["setsid", "double-fork", "chdir-out", "cleared-env"] as const;

  it.skipIf(process.platform !== "linux")(`${ESCAPE}: sessions.delete during a run kills them all before the directory goes`, async () => {
    const { dirs, gateway, client } = await commandGateway(escapeScript(KINDS, "sleep 300"));
    const ack = await chatSend(client, "escape-run", "go");
    const [shell, escaped] = await readEscapes(client, ack.runId, KINDS);
    const [row] = ledger(gateway.store, "agent:main:escape-run");
    const dir = row?.path as string;

    expect(await call(client, "sessions.delete", { key: "escape-run" })).toMatchObject({ ok: true, deleted: true });

    expect(await processAlive(shell)).toBe(false);
    for (const [index, kind] of KINDS.entries()) expect(await processAlive(escaped[index] as number), `${kind} ${escaped[index]}`).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(await processesWithCwdUnder(dirs.root)).toEqual([]);
    expect(gateway.store.getLease(row?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "delete", outcome: "removed" });
    expect((await waitForTerminals(client, [ack.runId])).get(ack.runId)?.state).toBe("aborted");
  });

  it.skipIf(process.platform !== "linux")(`${ESCAPE}: sessions.delete after the run ended kills them all before the directory goes`, async () => {
    const { dirs, gateway, client } = await commandGateway(escapeScript(KINDS, ""));
    const ack = await chatSend(client, "escape-linger", "go");
    const [shell, escaped] = await readEscapes(client, ack.runId, KINDS);
    expect((await waitForTerminals(client, [ack.runId])).get(ack.runId)?.state).toBe("final");
    await waitUntil(async () => !(await processAlive(shell)), "the shell to exit");
    const [row] = ledger(gateway.store, "agent:main:escape-linger");
    const dir = row?.path as string;

    expect(await call(client, "sessions.delete", { key: "escape-linger" })).toMatchObject({ ok: true, deleted: true });

    for (const [index, kind] of KINDS.entries()) expect(await processAlive(escaped[index] as number), `${kind} ${escaped[index]}`).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(await processesWithCwdUnder(dirs.root)).toEqual([]);
    expect(gateway.store.getLease(row?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "delete", outcome: "removed" });
  });
});
