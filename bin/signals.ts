/** First SIGTERM/SIGINT: `first`; a second one: `second`. */
export function onSignals(first: () => void, second: () => void): void {
  let count = 0;
  const handler = () => (++count === 1 ? first() : second());
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}
