export interface BackoffOptions {
  baseMs: number;
  capMs: number;
}

/**
 * Exponential backoff with full jitter: a uniformly random delay in [0, min(cap, base * 2^attempt)].
 * Full jitter spreads reconnecting agents, so a coordinator restart does not meet them all at once.
 * `random` is injectable for tests.
 */
export function fullJitterDelay(
  attempt: number,
  opts: BackoffOptions,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Deterministic exponential delay, capped; used where spreading is not needed (outbox retries). */
export function cappedExponentialDelay(attempt: number, opts: BackoffOptions): number {
  return Math.min(opts.capMs, opts.baseMs * 2 ** Math.min(attempt, 30));
}
