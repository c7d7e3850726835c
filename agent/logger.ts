/** Minimal leveled logger of the agent; the CLI decides where lines go. Never pass secrets to it. */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function consoleLogger(prefix: string, quiet = false): Logger {
  const line = (level: string, msg: string) => `${new Date().toISOString()} ${level} ${prefix}: ${msg}`;
  return {
    info: (msg) => {
      if (!quiet) console.log(line("info", msg));
    },
    warn: (msg) => console.warn(line("warn", msg)),
    error: (msg) => console.error(line("error", msg)),
  };
}

export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
