/**
 * Sends one message to a running ocgw gateway with the third-party `openclaw-node` client, exactly
 * as an existing OpenClaw caller would, and prints the reply.
 *
 *   npm start                                   # in one terminal
 *   node examples/first-message.ts "hello"      # in another (Node 24: node_modules/.bin/node)
 *
 * OCGW_URL (default: the local gateway, ws://127.0.0.1:18789) selects the gateway. The token is
 * found as the ocgw CLI finds it (OCGW_GATEWAY_TOKEN, the config's gateway.auth.token, else the one
 * the gateway generated into ~/.ocgw/gateway.token); a URL of another gateway needs OCGW_GATEWAY_TOKEN.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { resolveGatewayTarget } from "@ocgw/gateway";
import { OpenClawClient } from "openclaw-node";

const message = process.argv[2] ?? "hello";
// openclaw-node keeps a device identity file; keep it out of ~/.openclaw for this example.
const identityDir = mkdtempSync(path.join(tmpdir(), "ocgw-example-"));
const target = await resolveGatewayTarget({ url: process.env.OCGW_URL, token: process.env.OCGW_URL === undefined ? undefined : process.env.OCGW_GATEWAY_TOKEN });
const client = new OpenClawClient({
  url: target.url,
  autoReconnect: false,
  ...(target.token === undefined ? {} : { token: target.token }),
  deviceIdentityPath: path.join(identityDir, "device.json"),
});
try {
  await client.connect();
  console.log(await client.chatSync(message, { sessionKey: `example-${Date.now()}` }));
} finally {
  await client.disconnect();
  rmSync(identityDir, { recursive: true, force: true });
}
