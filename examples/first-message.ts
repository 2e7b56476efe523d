/**
 * Sends one message to a running ocgw gateway with the third-party `openclaw-node` client, exactly
 * as an existing OpenClaw caller would, and prints the reply.
 *
 *   npm start                                   # in one terminal
 *   node examples/first-message.ts "hello"      # in another (Node 24: node_modules/.bin/node)
 *
 * OCGW_URL (default ws://127.0.0.1:18789) and OCGW_GATEWAY_TOKEN select the gateway.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { OpenClawClient } from "openclaw-node";

const message = process.argv[2] ?? "hello";
// openclaw-node keeps a device identity file; keep it out of ~/.openclaw for this example.
const identityDir = mkdtempSync(path.join(tmpdir(), "ocgw-example-"));
const client = new OpenClawClient({
  url: process.env.OCGW_URL ?? "ws://127.0.0.1:18789",
  autoReconnect: false,
  ...(process.env.OCGW_GATEWAY_TOKEN === undefined ? {} : { token: process.env.OCGW_GATEWAY_TOKEN }),
  deviceIdentityPath: path.join(identityDir, "device.json"),
});
try {
  await client.connect();
  console.log(await client.chatSync(message, { sessionKey: `example-${Date.now()}` }));
} finally {
  await client.disconnect();
  rmSync(identityDir, { recursive: true, force: true });
}
