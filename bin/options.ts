import { readFileSync } from "node:fs";
import { PdciError } from "../protocol/errors.js";

/**
 * Reading settings the same way for every command: the flag wins, then the environment variable.
 * Secrets come from a file named by a `--…-file` flag or from the variable holding the value
 * itself, so they never appear in `ps`.
 */
export class OptionReader {
  readonly problems: string[] = [];

  constructor(
    private readonly opts: Record<string, unknown>,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  string(flag: string, envName: string, fallback: string): string {
    const v = this.opts[flag];
    if (typeof v === "string") return v;
    return this.env[envName] ?? fallback;
  }

  /** A secret: `--x-file path` (file contents, trimmed) or the env variable's value. */
  secret(fileFlag: string, envName: string): string {
    const file = this.opts[fileFlag];
    if (typeof file === "string") {
      try {
        return readFileSync(file, "utf8").trim();
      } catch (err) {
        this.problems.push(
          `--${kebab(fileFlag)}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
        );
        return "";
      }
    }
    return (this.env[envName] ?? "").trim();
  }

  int(flag: string, envName: string, fallback: number, min: number, max: number): number {
    const raw = this.string(flag, envName, String(fallback));
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      this.problems.push(`--${kebab(flag)} / ${envName}: '${raw}' is not an integer in [${min}, ${max}]`);
      return fallback;
    }
    return n;
  }

  /** Seconds (decimals allowed) turned into milliseconds. */
  seconds(flag: string, envName: string, fallbackMs: number): number {
    const raw = this.string(flag, envName, String(fallbackMs / 1000));
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0 || n > 31 * 24 * 3600) {
      this.problems.push(`--${kebab(flag)} / ${envName}: '${raw}' is not a positive number of seconds`);
      return fallbackMs;
    }
    return Math.round(n * 1000);
  }

  list(flag: string, envName: string): string[] {
    const v = this.opts[flag];
    const raw = Array.isArray(v) ? v.join(",") : this.string(flag, envName, "");
    return raw
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
  }

  /** `host:port`, `[v6]:port` or `:port`. */
  hostPort(flag: string, envName: string, fallback: string): { host: string; port: number } {
    const raw = this.string(flag, envName, fallback);
    const m = /^(?:\[([^\]]+)\]|([^:]*)):([0-9]{1,5})$/.exec(raw);
    const port = Number(m?.[3]);
    if (!m || port > 65535) {
      this.problems.push(`--${kebab(flag)} / ${envName}: '${raw}' is not host:port`);
      return { host: "127.0.0.1", port: 8080 };
    }
    return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
  }
}

function kebab(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Every configuration problem at once, so an operator fixes them in one go. */
export class ConfigError extends PdciError {
  constructor(readonly problems: string[]) {
    super("bad_config", `invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}
