import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { type GatewayEvent, GatewayError, connectGateway, remoteErrorOf, resolveGatewayTarget, sendChat, startGateway } from "../../src/index.ts";

const TOKEN = "client-token";

async function gatewayForTest() {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-cli-")));
  const gateway = await startGateway(
    { stateDir: path.join(dir, "state"), gateway: { port: 0, auth: { token: TOKEN } }, workspace: { ephemeral: { root: path.join(dir, "eph") }, gc: { intervalMs: 0 } } },
    { log: () => undefined },
  );
  onTestFinished(async () => {
    await gateway.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  await gateway.startupCollection;
  return { gateway, dir };
}

describe("connectGateway", () => {
  it("completes the handshake as client cli/cli and reports hello-ok with the granted scopes", async () => {
    const { gateway } = await gatewayForTest();
    const client = await connectGateway({ url: gateway.url, token: TOKEN, scopes: ["operator.read"] });
    onTestFinished(() => client.close());
    expect(client.hello).toMatchObject({ type: "hello-ok", protocol: 4, auth: { scopes: ["operator.read"] } });
    const denied = await client.call("sessions.delete", { key: "x" }).catch((error: unknown) => error);
    expect(denied).toBeInstanceOf(GatewayError);
    expect(remoteErrorOf(denied)).toMatchObject({ code: "FORBIDDEN", details: { code: "MISSING_SCOPE" } });
  });

  it("delivers events to named and '*' listeners until unsubscribed", async () => {
    const { gateway } = await gatewayForTest();
    const client = await connectGateway({ url: gateway.url, token: TOKEN });
    onTestFinished(() => client.close());
    const chat: GatewayEvent[] = [];
    const all: string[] = [];
    client.on("chat", (event) => chat.push(event));
    const off = client.on("*", (event) => all.push(event.event));
    const outcome = await sendChat(client, { sessionKey: "events", message: "a b" });
    expect(outcome).toMatchObject({ state: "final", text: "Echo: a b", sessionKey: "agent:main:events" });
    // Deltas are coalesced (gateway.deltaWindowMs), so how many there are depends on timing; their text does not.
    const states = chat.map((event) => (event.payload as { state: string }).state);
    expect(states.at(-1)).toBe("final");
    expect(states.slice(0, -1).length).toBeGreaterThan(0);
    expect(states.slice(0, -1).every((state) => state === "delta")).toBe(true);
    expect(chat.slice(0, -1).map((event) => (event.payload as { deltaText: string }).deltaText).join("")).toBe("Echo: a b");
    expect(all).toContain("agent");
    off();
    const before = all.length;
    await sendChat(client, { sessionKey: "events", message: "again" });
    expect(all.length).toBe(before);
  });

  it("rejects pending calls with GATEWAY_UNREACHABLE when the gateway goes away, and calls after close", async () => {
    const { gateway } = await gatewayForTest();
    const client = await connectGateway({ url: gateway.url, token: TOKEN });
    const pending = client.call("agent", { message: "/echo:sleep 60000 x", idempotencyKey: "held" }, { expectFinal: true }).catch((error: unknown) => error);
    await gateway.close();
    expect(await pending).toMatchObject({ code: "GATEWAY_UNREACHABLE" });
    await client.close();
    await client.close();
    await expect(client.call("health")).rejects.toMatchObject({ code: "GATEWAY_UNREACHABLE" });
  });

  it("a call that gets no answer in time rejects with REQUEST_TIMEOUT", async () => {
    const { gateway } = await gatewayForTest();
    const client = await connectGateway({ url: gateway.url, token: TOKEN });
    onTestFinished(() => client.close());
    const slow = client.call("agent", { message: "/echo:sleep 60000 x", idempotencyKey: "slow" }, { expectFinal: true, timeoutMs: 50 });
    await expect(slow).rejects.toMatchObject({ code: "REQUEST_TIMEOUT" });
    expect(await client.call("health")).toMatchObject({ ok: true });
  });

  it("an unknown host or HTTP endpoint is GATEWAY_UNREACHABLE; a missing token is HANDSHAKE_FAILED", async () => {
    const { gateway } = await gatewayForTest();
    await expect(connectGateway({ url: gateway.url })).rejects.toMatchObject({ code: "HANDSHAKE_FAILED" });
    await expect(connectGateway({ url: "ws://127.0.0.1:1" })).rejects.toMatchObject({ code: "GATEWAY_UNREACHABLE" });
    await expect(connectGateway({ url: "not a url" })).rejects.toMatchObject({ code: "GATEWAY_UNREACHABLE" });
  });
});

describe("resolveGatewayTarget", () => {
  it("url and token: flag > OCGW_GATEWAY_TOKEN > config; port from the config, else 18789", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-cli-"));
    onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
    const config = path.join(dir, "c.json");
    await fs.writeFile(config, JSON.stringify({ gateway: { port: 4321, auth: { token: "from-file" } } }));
    expect(await resolveGatewayTarget({ env: { OCGW_CONFIG: config } })).toEqual({ url: "ws://127.0.0.1:4321", token: "from-file" });
    expect(await resolveGatewayTarget({ env: { OCGW_CONFIG: config, OCGW_GATEWAY_TOKEN: "env" } })).toEqual({ url: "ws://127.0.0.1:4321", token: "env" });
    expect(await resolveGatewayTarget({ url: "ws://h:1", token: "flag", env: { OCGW_CONFIG: config, OCGW_GATEWAY_TOKEN: "env" } })).toEqual({ url: "ws://h:1", token: "flag" });
    await fs.writeFile(config, "{ not json5");
    expect(await resolveGatewayTarget({ env: { OCGW_CONFIG: config } })).toEqual({ url: "ws://127.0.0.1:18789", token: undefined });
  });
});
