import cliProgress from "cli-progress";

/** A progress bar on stderr when it is a terminal; silent otherwise (so stdout stays clean for pipes). */
export function progressBar(label: string): { update(fraction: number): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}%`,
      stream: process.stderr,
      clearOnComplete: true,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(100, 0);
  return {
    update(fraction: number) {
      bar.update(Math.round(fraction * 100));
    },
    stop() {
      bar.stop();
    },
  };
}
