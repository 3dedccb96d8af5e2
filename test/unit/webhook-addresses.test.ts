// Which addresses a webhook may reach: public ones only, whatever form the address is written in.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPrivateAddress, literalAddress } from '../../src/webhooks/addresses.js';

describe('webhook addresses', () => {
  it('refuses loopback, private, CGNAT, link-local (metadata), unique-local, multicast and reserved addresses', () => {
    for (const address of [
      '127.0.0.1',
      '127.255.0.9',
      '0.0.0.0',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '100.64.0.1',
      '169.254.169.254',
      '224.0.0.1',
      '255.255.255.255',
      '::1',
      '::',
      'fe80::1',
      'fd00::1',
      'fc12:3456::1',
      'ff02::1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '::ffff:a9fe:a9fe',
      'not an address',
    ]) {
      assert.equal(isPrivateAddress(address), true, address);
    }
  });

  it('refuses private IPv4 addresses carried in IPv6: compatible, translated, NAT64 and 6to4 forms', () => {
    for (const address of [
      '::7f00:1',
      '::a9fe:a9fe',
      '::ffff:0:7f00:1',
      '0:0:0:0:0:ffff:7f00:1',
      '64:ff9b::7f00:1',
      '64:ff9b::169.254.169.254',
      '64:ff9b::a00:5',
      '64:ff9b:1::808:808',
      '2002:a9fe:a9fe::1',
      '2002:c0a8:101::',
      '2002:7f00:1:1::1',
      'fec0::1',
      'fe80::1%eth0',
    ]) {
      assert.equal(isPrivateAddress(address), true, address);
    }
  });

  it('allows public addresses, IPv4-mapped ones included', () => {
    for (const address of [
      '8.8.8.8',
      '172.32.0.1',
      '100.128.0.1',
      '1.1.1.1',
      '2606:4700::1111',
      '::ffff:808:808',
      '64:ff9b::808:808',
      '2002:808:808::1',
      '2a00:1450:4001:81c::200e',
    ]) {
      assert.equal(isPrivateAddress(address), false, address);
    }
  });

  it('reads the address a URL is written with, in every form the URL parser accepts', () => {
    assert.equal(literalAddress(new URL('http://[::1]:8080/x')), '::1');
    assert.equal(literalAddress(new URL('http://0x7f000001/')), '127.0.0.1');
    assert.equal(literalAddress(new URL('http://2130706433/')), '127.0.0.1');
    assert.equal(literalAddress(new URL('https://example.com/')), null);
  });
});
