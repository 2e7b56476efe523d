/**
 * A child for the collector bench: `node bench/orphan-maker.ts <root> <count> [concurrency]`
 * acquires `count` ephemeral leases in `root` through createEphemeralProvider (marker and
 * bootstrap files, exactly as a gateway's), prints `ready <count> <instanceId>` and waits to be
 * SIGKILLed, which makes every lease an orphan of a dead instance. It exits by itself after
 * 15 minutes in case nobody kills it.
 */
import { createEphemeralProvider } from "../packages/workspace/src/index.ts";

const [root, countArg, concurrencyArg] = process.argv.slice(2);
const count = Number(countArg);
const concurrency = Number(concurrencyArg ?? 8);
if (root === undefined || !Number.isInteger(count) || count < 1 || !Number.isInteger(concurrency) || concurrency < 1) {
  console.error("usage: orphan-maker.ts <root> <count> [concurrency]");
  process.exit(2);
}
setTimeout(() => process.exit(3), 15 * 60_000).unref();

const provider = await createEphemeralProvider({ root, maxLeases: count });
let next = 0;
async function worker(): Promise<void> {
  while (next < count) {
    const i = next++;
    await provider.acquire({ key: `agent:main:orphan-${i}` });
  }
}
await Promise.all(Array.from({ length: concurrency }, () => worker()));
process.stdout.write(`ready ${count} ${provider.instance.id}\n`);
// Stay alive (the instance heartbeat keeps the loop busy) until SIGKILL or the 15-minute bound.
setTimeout(() => process.exit(3), 15 * 60_000);
