// demo:publish's --api: the server's origin or its GraphQL URL, and a clear sentence when nothing answers.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { describe, it } from 'node:test';
import { demoAdmin, graphqlUrl } from '../../demo/publish.js';

describe('demo:publish --api', () => {
  it('takes the server origin or its GraphQL URL, and refuses what is not an http(s) URL', () => {
    assert.equal(graphqlUrl('http://localhost:4100'), 'http://localhost:4100/graphql');
    assert.equal(graphqlUrl('http://localhost:4100/'), 'http://localhost:4100/graphql');
    assert.equal(graphqlUrl('http://localhost:4100/graphql'), 'http://localhost:4100/graphql');
    assert.throws(() => graphqlUrl('localhost:4100/x'), /not an http\(s\) URL/);
    assert.throws(() => graphqlUrl('nonsense'), /not a URL/);
  });

  it('says the server cannot be reached, and exits 1, before training anything', async () => {
    // A port that was free a moment ago: nothing listens there.
    const probe = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => probe.once('listening', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const api = `http://127.0.0.1:${port}`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'demo/publish.ts', '--api', api], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.status, 1, run.stderr);
    assert.ok(
      run.stderr.includes(`demo:publish failed: cannot reach ${api}/graphql (ECONNREFUSED): is the server running`),
      run.stderr,
    );
    assert.doesNotMatch(run.stdout, /training/);
  });
});

describe("the demo admin's password", () => {
  it('is derived from the app secret: stable for one installation, different for another, never the old fixed one', () => {
    const secret = 'a'.repeat(43);
    const admin = demoAdmin(secret);
    assert.equal(admin.email, 'demo-admin@modelmarket.local');
    assert.match(admin.password, /^[\w-]{20}$/);
    assert.deepEqual(demoAdmin(secret), admin, 'a demo started again finds its admin');
    assert.notEqual(demoAdmin('b'.repeat(43)).password, admin.password);
    assert.notEqual(admin.password, 'demo admin passphrase');
  });
});
