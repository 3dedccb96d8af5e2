// What a webhook URL may be, as written (endpoints and a prediction's own `webhook`). Where it leads is checked
// again at every delivery, on the address it then resolves to (see delivery), since DNS can change in between.
import { createHash } from 'node:crypto';
import { BadUserInputError } from '../server/errors.js';

export const MAX_WEBHOOK_URL_LENGTH = 2048;

/** An absolute http(s) URL without credentials or fragment, at most MAX_WEBHOOK_URL_LENGTH characters. */
export function parseWebhookUrl(value: string, field: string): URL {
  if (value.length > MAX_WEBHOOK_URL_LENGTH)
    throw new BadUserInputError(`A webhook URL has at most ${MAX_WEBHOOK_URL_LENGTH} characters`, field);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BadUserInputError('A webhook URL must be an absolute http:// or https:// URL', field);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new BadUserInputError('A webhook URL must be an absolute http:// or https:// URL', field);
  if (url.username || url.password)
    throw new BadUserInputError('A webhook URL cannot carry credentials; verify deliveries by their signature', field);
  if (url.hash) throw new BadUserInputError('A webhook URL cannot have a fragment (#…)', field);
  return url;
}

/**
 * A webhook URL as the append-only audit log keeps it: its origin and a SHA-256 of the whole URL, never the URL
 * (often a capability, such as a Slack hook, that the log could never forget).
 */
export function auditedWebhookUrl(href: string): { urlOrigin: string; urlSha256: string } {
  return { urlOrigin: new URL(href).origin, urlSha256: createHash('sha256').update(href).digest('hex') };
}
