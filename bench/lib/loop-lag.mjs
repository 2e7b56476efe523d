// Preloaded into a gateway child by the stream section (`node --import <this> … gateway run`): the
// event-loop delay of the gateway process itself, from perf_hooks.monitorEventLoopDelay (1 ms
// resolution), without a line of gateway code. On SIGUSR2 it writes one line to stderr,
// `ocgw-bench-loop {"p50":…,"p99":…,"max":…,"count":…}` (delays in ms: each sample is the time
// between two 1 ms timer turns, so an idle loop reads ~1.1 ms and a 30 ms block is one sample of
// ~31 ms), and resets the histogram. Plain JavaScript, as start-floor.mjs.
import { monitorEventLoopDelay } from "node:perf_hooks";

const RESOLUTION_MS = 1;
const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
histogram.enable();

process.on("SIGUSR2", () => {
  const ms = (ns) => ns / 1e6;
  const line = {
    p50: ms(histogram.percentile(50)),
    p99: ms(histogram.percentile(99)),
    max: ms(histogram.max),
    count: histogram.count,
  };
  process.stderr.write(`ocgw-bench-loop ${JSON.stringify(line)}\n`);
  histogram.reset();
});
