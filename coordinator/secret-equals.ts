import { createHash, timingSafeEqual } from "node:crypto";

/** Compares a presented secret with the expected one in constant time; an empty expected never matches. */
export function secretEquals(presented: string, expected: string): boolean {
  if (expected.length === 0) return false;
  // Hashing first gives equal lengths, so the comparison time does not reveal the length.
  const a = createHash("sha256").update(presented).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}
