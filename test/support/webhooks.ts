// Webhook receivers and the README's verification code, for the tests of deliveries (webhooks, async predictions).
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { EventInput } from '../../src/events/outbox.js';
import type { TestServer } from './server.js';

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export type VerifyWebhook = (secret: string, headers: Record<string, string | undefined>, body: string) => boolean;

/** A receiver whose paths answer as the tests need: /ok 200, /flaky 500 three times then 200, /down 500, /moved 302. */
export async function startReceiver() {
  const received: Received[] = [];
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const route = new URL(req.url!, 'http://x').pathname;
      received.push({ path: route, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const n = (hits.get(route) ?? 0) + 1;
      hits.set(route, n);
      if (route.startsWith('/ok')) res.writeHead(200).end('thanks');
      else if (route.startsWith('/flaky')) res.writeHead(n <= 3 ? 500 : 204).end();
      else if (route.startsWith('/moved')) res.writeHead(302, { location: '/ok-after-redirect' }).end();
      else res.writeHead(500).end('down');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    received,
    url: (route: string) => `http://127.0.0.1:${port}${route}`,
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Emits events the way every part does: through the outbox, in the transaction of a change. */
export async function emitEvents(server: TestServer, events: EventInput[]): Promise<string[]> {
  const client = await server.sql.connect();
  try {
    await client.query('BEGIN');
    const ids = await server.app.services.events.emit(client, events);
    await client.query('COMMIT');
    server.app.services.events.wake();
    return ids;
  } finally {
    client.release();
  }
}

/** The README's ```ts and ```sh blocks under "Verifying a delivery". */
export async function readmeVerification(): Promise<{ typescript: string; shell: string }> {
  const readme = await readFile('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('### Verifying a delivery'));
  const block = (lang: string) => {
    const start = section.indexOf(`\`\`\`${lang}\n`) + lang.length + 4;
    return section.slice(start, section.indexOf('```', start));
  };
  return { typescript: block('ts'), shell: block('sh') };
}

/** The README's TypeScript verifier, as a consumer would paste it: written to `dir` and imported from there. */
export async function readmeVerifier(dir: string): Promise<VerifyWebhook> {
  const { typescript } = await readmeVerification();
  await writeFile(path.join(dir, 'verify.ts'), typescript);
  return ((await import(path.join(dir, 'verify.ts'))) as { verifyWebhook: VerifyWebhook }).verifyWebhook;
}
