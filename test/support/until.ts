// Waiting on work another process or a background worker does (jobs, deliveries, dispatch): poll until it shows.
import { setTimeout as sleep } from 'node:timers/promises';

/** The first value `probe` gives other than undefined, asked every 50 ms; throws after `timeoutMs`. */
export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(50);
  }
}
