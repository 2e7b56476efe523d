import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { chatSend, connectClient } from "./lib/client.ts";
import { startGatewayChild } from "./lib/gateway-child.ts";
import { stats } from "./lib/stats.ts";
const dir = await mkdtemp(path.join(tmpdir(), "ocgw-prof-"));
const gateway = await startGatewayChild({ dir, implicit: "ephemeral", idleTtlMs: 0, env: { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.argv[2] ?? "/tmp/prof"} --cpu-prof-interval=100` } });
const client = await connectClient(gateway.url, gateway.token);
for (let i = 0; i < 50; i++) { const s = await chatSend(client, { sessionKey: `w${i}`, message: "hi", idempotencyKey: `w${i}` }); await s.end; }
for (let r = 0; r < 5; r++) {
  const sends = [];
  for (let i = 0; i < 200; i++) sends.push(chatSend(client, { sessionKey: `b${r}-${i}`, message: "hello there", idempotencyKey: `b${r}-${i}` }));
  const done = await Promise.all(sends);
  const acks = done.map((s) => s.ack.at - s.t0);
  await Promise.all(done.map((s) => s.end));
  console.log(`burst ${r}: ack p50 ${stats(acks).p50.toFixed(1)} p99 ${stats(acks).p99.toFixed(1)} max ${stats(acks).max.toFixed(1)}`);
}
await client.close();
await gateway.stop();
await rm(dir, { recursive: true, force: true });
