// Which addresses a webhook may reach. Deliveries go to the public internet only: never to this host, the private
// network it sits in, or a cloud metadata service (169.254.169.254), whatever the URL's name resolves to.
import { BlockList, isIP } from 'node:net';

const privateRanges = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this" network
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, metadata services
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  privateRanges.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 96], // unspecified, loopback, and IPv4-compatible (deprecated; a SIT tunnel reaches the IPv4 address)
  ['64:ff9b:1::', 48], // NAT64 for local use (RFC 8215): leads into the operator's own IPv4 network
  ['100::', 64], // discard-only
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated, still routed in places)
  ['ff00::', 8], // multicast
] as const) {
  privateRanges.addSubnet(network, prefix, 'ipv6');
}

/** The eight 16-bit groups of an IPv6 address (one isIP calls 6), a dotted IPv4 tail and a zone included. */
function ipv6Groups(address: string): number[] {
  let text = address.replace(/%.*$/, '');
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const parse = (part: string | undefined) => (part ? part.split(':').map((group) => parseInt(group, 16)) : []);
  const [head, tail] = text.split('::');
  const high = parse(head);
  if (tail === undefined) return high;
  const low = parse(tail);
  return [...high, ...new Array<number>(8 - high.length - low.length).fill(0), ...low];
}

const ipv4Of = (high: number, low: number) => `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;

/**
 * True for loopback, private, link-local, CGNAT, multicast and reserved addresses, IPv4 ones written in IPv6
 * included: mapped (::ffff:0:0/96) and translated (::ffff:0:0:0/96) forms, NAT64 (64:ff9b::/96, which a NAT64
 * gateway forwards to the IPv4 address, private ones of its network included) and 6to4 (2002::/16).
 */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return privateRanges.check(address, 'ipv4');
  if (family !== 6) return true;
  const g = ipv6Groups(address);
  const zeros = (from: number, to: number) => g.slice(from, to).every((group) => group === 0);
  const carriesIpv4 =
    (zeros(0, 5) && g[5] === 0xffff) ||
    (zeros(0, 4) && g[4] === 0xffff && g[5] === 0) ||
    (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6));
  if (carriesIpv4) return isPrivateAddress(ipv4Of(g[6]!, g[7]!));
  if (g[0] === 0x2002) return isPrivateAddress(ipv4Of(g[1]!, g[2]!));
  return privateRanges.check(address, 'ipv6');
}

/** The IP address a URL's host is written as (`[::1]` → `::1`), or null for a name. */
export function literalAddress(url: URL): string | null {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return isIP(host) ? host : null;
}
