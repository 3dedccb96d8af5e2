// One attempt of a delivery: a signed POST (Standard Webhooks) that follows no redirect, gives up after 10 s and
// reads at most a few KB of the answer. The receiver's address is checked on what its name resolves to now, and
// the connection goes to that checked address, so a name that changes its DNS answer (rebinding) cannot lead
// the server into its own network.
import { createHmac, randomBytes } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { isPrivateAddress, literalAddress } from './addresses.js';

export const SECRET_PREFIX = 'whsec_';
/** The whole attempt (connect, answer, body), as Standard Webhooks and the issue ask. */
export const DELIVERY_TIMEOUT_MS = 10_000;
/** Of the receiver's answer, only this much is read (it is not kept, only its status). */
const MAX_RESPONSE_BYTES = 4096;

/** A new signing secret: `whsec_` + base64 of 24 random bytes (Standard Webhooks' form). */
export function newSigningSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(24).toString('base64')}`;
}

/** `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, the key being the base64 after `whsec_`. */
export function signature(secret: string, messageId: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${messageId}.${timestamp}.${body}`).digest('base64')}`;
}

export interface DeliveryRequest {
  url: string;
  messageId: string;
  secret: string;
  body: string;
  allowPrivateNetworks: boolean;
}

export interface AttemptOutcome {
  ok: boolean;
  responseCode: number | null;
  latencyMs: number | null;
  error: string | null;
  /** The address was refused (private network): trying again will not help. */
  refused: boolean;
}

/** The refusal of an address, as an error the attempt records. */
class RefusedAddressError extends Error {}

function refusal(address: string): RefusedAddressError {
  return new RefusedAddressError(
    `refused: the URL leads to ${address}, a loopback, private, link-local or metadata address`,
  );
}

/** dns.lookup, refusing private addresses (when not allowed); the socket connects to what this returns. */
function checkedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, '', 0);
      const refused = allowPrivate ? undefined : addresses.find((entry) => isPrivateAddress(entry.address));
      // One private answer is enough to refuse: a name with both kinds is a rebinding attempt or a misconfiguration.
      if (refused) return callback(refusal(refused.address), '', 0);
      if (options.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, addresses);
      const first = addresses[0]!;
      callback(null, first.address, first.family);
    });
  };
}

export async function deliver(request: DeliveryRequest): Promise<AttemptOutcome> {
  const url = new URL(request.url);
  const literal = literalAddress(url);
  // An IP written in the URL is connected to without any lookup, so it is checked here.
  if (literal && !request.allowPrivateNetworks && isPrivateAddress(literal))
    return { ok: false, responseCode: null, latencyMs: null, error: refusal(literal).message, refused: true };
  const timestamp = Math.floor(Date.now() / 1000);
  const started = performance.now();
  const client = url.protocol === 'https:' ? https : http;
  return new Promise<AttemptOutcome>((resolve) => {
    let settled = false;
    const finish = (outcome: Omit<AttemptOutcome, 'latencyMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ ...outcome, latencyMs: Math.round(performance.now() - started) });
    };
    const req = client.request(url, {
      method: 'POST',
      // A fresh connection each time: a pooled one could lead to an address checked for another name.
      agent: false,
      lookup: checkedLookup(request.allowPrivateNetworks),
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(request.body),
        'user-agent': 'Modelmarket-Webhooks/1',
        'webhook-id': request.messageId,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signature(request.secret, request.messageId, timestamp, request.body),
      },
    });
    const timer = setTimeout(
      () =>
        finish({
          ok: false,
          responseCode: null,
          error: `no answer within ${DELIVERY_TIMEOUT_MS / 1000} s`,
          refused: false,
        }),
      DELIVERY_TIMEOUT_MS,
    );
    req.once('error', (error) =>
      finish({
        ok: false,
        responseCode: null,
        error: error instanceof RefusedAddressError ? error.message : `connection failed: ${error.message}`,
        refused: error instanceof RefusedAddressError,
      }),
    );
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      const outcome = {
        ok: status >= 200 && status < 300,
        responseCode: status,
        error:
          status >= 300 && status < 400
            ? `redirect (${status}) not followed: register the final URL`
            : status >= 200 && status < 300
              ? null
              : `the receiver answered ${status}`,
        refused: false,
      };
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read >= MAX_RESPONSE_BYTES) finish(outcome);
      });
      res.once('end', () => finish(outcome));
      res.once('error', () => finish(outcome));
    });
    req.end(request.body);
  });
}
