/**
 * Runs async tasks one after another per key, in the order they were submitted, while tasks of
 * different keys run concurrently. Used to keep git from working on one mirror twice at once.
 */
export class KeyedSerializer {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(task);
    // The chain continues whatever the task's outcome; the caller sees the outcome through `result`.
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** How many keys have a task queued or running. */
  get activeKeys(): number {
    return this.tails.size;
  }
}
