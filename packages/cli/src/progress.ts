import cliProgress from "cli-progress";
import type { Writer } from "./io.ts";

/** Above this many entries a terminal gets a progress bar. */
export const PROGRESS_MIN_ENTRIES = 20;

export interface Progress {
  update(done: number, total: number, phase: string): void;
  stop(): void;
}

/** A progress bar on stderr when it is a terminal and the work has more than 20 entries; else silent. */
export function createProgress(stderr: Writer): Progress {
  let bar: cliProgress.SingleBar | undefined;
  let phase: string | undefined;
  return {
    update(done, total, nextPhase) {
      if (stderr.isTTY !== true || total <= PROGRESS_MIN_ENTRIES) return;
      if (bar === undefined || phase !== nextPhase) {
        bar?.stop();
        phase = nextPhase;
        bar = new cliProgress.SingleBar(
          { stream: stderr as NodeJS.WritableStream, format: `${nextPhase.padEnd(8)} [{bar}] {value}/{total}`, hideCursor: true, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0);
      }
      bar.update(done);
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}
