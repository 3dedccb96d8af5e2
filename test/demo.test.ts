// `npm start -- --demo` / `npm run demo:publish`: the demo models are published on a free plan that a demo consumer
// has accepted, and the lines printed for that consumer work when pasted into a shell: log-in, predict, usage.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { DEMO_CONSUMER, FREE_PLAN, publishDemos } from '../demo/publish.js';
import { demoArtifacts } from './support/demo-artifacts.js';
import { startTestServer, type TestServer } from './support/server.js';

/** Runs pasted lines the way a reader's shell would, stopping at the first that fails (the server runs in this process). */
async function paste(lines: string): Promise<{ stdout: string; stderr: string; status: number | null }> {
  const child = spawn('bash', ['-c', `set -euo pipefail\n${lines}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [status] = (await once(child, 'exit')) as [number | null];
  return { stdout, stderr, status };
}

describe('the demo: free plans and a consumer who can call them', () => {
  let server: TestServer;
  let artifactsDir: string;
  before(async () => {
    [server, artifactsDir] = await Promise.all([startTestServer(), demoArtifacts()]);
  });
  after(() => server.close());

  const count = async (table: string) =>
    Number((await server.sql.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n);

  it('publishes each model on a free plan the printed consumer has accepted, and the printed calls work', async () => {
    const printed: string[] = [];
    await publishDemos(server.url, { artifactsDir, log: (line) => printed.push(line) });
    const output = printed.join('\n');

    assert.ok(output.includes(`Demo consumer: ${DEMO_CONSUMER.email} / ${DEMO_CONSUMER.password}`), output);
    const logIn = /^ {2}(TOKEN=\$\(curl .*\))/m.exec(output)?.[1];
    const predict =
      /^curl -s \S+ -H 'content-type: application\/json' -H "authorization: Bearer \$TOKEN" \\\n.*predict.*$/m.exec(
        output,
      )?.[0];
    const usage = /^curl -s .*usage.*$/m.exec(output)?.[0];
    assert.ok(logIn && predict && usage, output);

    const run = await paste(`${logIn}\n${predict}\necho\n${usage}`);
    assert.equal(run.status, 0, run.stderr);
    const answers = run.stdout.split('\n').filter(Boolean);
    assert.equal(answers.length, 2, JSON.stringify(answers));
    const [prediction, report] = answers.map((line) => JSON.parse(line));
    assert.equal(prediction.errors, undefined, JSON.stringify(prediction));
    const [outputOfDigit] = prediction.data.predict.outputs;
    assert.ok(outputOfDigit.label >= '0' && outputOfDigit.label <= '9', JSON.stringify(prediction));
    // Billed under the consumer's free contract: counted against the quota, at price 0.
    assert.deepEqual(
      { predictions: report.data.usage.totals.predictions, billableUnits: report.data.usage.totals.billableUnits },
      { predictions: 1, billableUnits: 1 },
    );
    assert.deepEqual(
      report.data.usage.totals.amounts.map((a: { amount: string; currency: string }) => [Number(a.amount), a.currency]),
      [[0, FREE_PLAN.currency]],
    );

    const { rows: contracts } = await server.sql.query(
      `SELECT c.status, p.name, p.price_per_prediction::text AS price, p.prediction_quota AS quota
         FROM contracts c JOIN license_plans p ON p.id = c.plan_id JOIN users u ON u.id = c.consumer_id
        WHERE u.email = $1`,
      [DEMO_CONSUMER.email],
    );
    assert.deepEqual(
      contracts.map((c) => ({ ...c, price: Number(c.price) })),
      [{ status: 'ACTIVE', name: FREE_PLAN.name, price: 0, quota: FREE_PLAN.predictionQuota }],
    );
  });

  it("publishes the MNIST MLP's UINT8 variant and verified metrics on 1.0.0", async () => {
    const res = await server.gql(
      `{ model(slug: "mnist-mlp") { versions { version derivedFrom { version } optimization { quantize sizeRatio accuracyDrop } }
        version(version: "1.0.0") { verifiedMetrics { verified accuracy examples } } } }`,
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const { versions, version } = res.data!.model;
    const variant = versions.find((v: { version: string }) => v.version === '1.1.0');
    assert.deepEqual(variant.derivedFrom, { version: '1.0.0' });
    assert.equal(variant.optimization.quantize, 'UINT8');
    assert.ok(variant.optimization.sizeRatio >= 3.5 && variant.optimization.accuracyDrop <= 0.01);
    assert.equal(version.verifiedMetrics.verified, true);
    assert.ok(version.verifiedMetrics.accuracy > 0.8 && version.verifiedMetrics.examples > 0);
  });

  it('changes nothing when run again (a demo server started again)', async () => {
    const tables = ['users', 'model_versions', 'license_plans', 'contracts', 'artifact_variants', 'evaluations'];
    const before = await Promise.all(tables.map(count));
    await publishDemos(server.url, { artifactsDir, log: () => {} });
    assert.deepEqual(await Promise.all(tables.map(count)), before);
  });
});
