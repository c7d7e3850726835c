/**
 * Small readers that take one field of an untrusted object and either return it typed or record
 * what was wrong. Every problem is collected, so an error lists all of them at once.
 */
export class FieldReader {
  readonly problems: string[] = [];

  constructor(
    private readonly obj: Record<string, unknown>,
    private readonly prefix = "",
  ) {}

  private fail(key: string, want: string): void {
    this.problems.push(`${this.prefix}${key}: expected ${want}`);
  }

  string(key: string, opts: { max?: number; allowEmpty?: boolean } = {}): string {
    const v = this.obj[key];
    const max = opts.max ?? 4096;
    if (typeof v !== "string" || v.length > max || (!opts.allowEmpty && v.length === 0)) {
      this.fail(key, `${opts.allowEmpty ? "a" : "a non-empty"} string of at most ${max} characters`);
      return "";
    }
    return v;
  }

  int(key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.obj[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
      this.fail(key, `an integer in [${min}, ${max}]`);
      return min;
    }
    return v;
  }

  /** An integer field that older peers do not send: `fallback` when it is absent. */
  optionalInt(key: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    return this.obj[key] === undefined ? fallback : this.int(key, min, max);
  }

  intOrNull(key: string): number | null {
    if (this.obj[key] === null) return null;
    return this.int(key, -2147483648, 2147483647);
  }

  oneOf<T extends string>(key: string, values: readonly T[]): T {
    const v = this.obj[key];
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
      this.fail(key, `one of ${values.join(", ")}`);
      return values[0] as T;
    }
    return v as T;
  }

  stringList(key: string, maxItems = 64): string[] {
    const v = this.obj[key];
    if (
      !Array.isArray(v) ||
      v.length > maxItems ||
      !v.every((s) => typeof s === "string" && s.length <= 256)
    ) {
      this.fail(key, `a list of at most ${maxItems} strings`);
      return [];
    }
    return v as string[];
  }

  list<T>(key: string, maxItems: number, item: (r: FieldReader) => T): T[] {
    const v = this.obj[key];
    if (!Array.isArray(v) || v.length > maxItems) {
      this.fail(key, `a list of at most ${maxItems} items`);
      return [];
    }
    return v.map((entry, i) => this.nested(`${key}[${i}]`, entry, item));
  }

  object<T>(key: string, item: (r: FieldReader) => T): T {
    return this.nested(key, this.obj[key], item);
  }

  private nested<T>(path: string, value: unknown, item: (r: FieldReader) => T): T {
    const reader = new FieldReader(isRecord(value) ? value : {}, `${this.prefix}${path}.`);
    if (!isRecord(value)) this.fail(path, "an object");
    const result = item(reader);
    this.problems.push(...reader.problems);
    return result;
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
