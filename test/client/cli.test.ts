// `modelmarket …`, the real bin run as a child process against a real server: an owner logs in, pushes a trained
// model and sees it listed; a consumer takes a licence, makes an API key, predicts with it, exports usage.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import jwt from 'jsonwebtoken';
import { signUp } from '../support/fixtures.js';
import { createPlan } from '../support/licensing.js';
import { assertClose, buildMlp, DIGITS, expectedOutputs, randomRows } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { expiredCopy, saveModelDir, signingKeyEnv } from './support.js';

const BIN = path.resolve('bin/modelmarket.mjs');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('modelmarket CLI', () => {
  let server: TestServer;
  let scratch: string;

  before(async () => {
    server = await startTestServer(signingKeyEnv);
    scratch = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-cli-'));
  });
  after(() => server.close());

  /** Runs the bin with `args`; `config` names the credentials file, `stdin` is piped in. */
  function cli(args: string[], options: { config: string; env?: Record<string, string>; stdin?: string }) {
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith('MODELMARKET')),
    );
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...inherited, MODELMARKET_URL: server.origin, MODELMARKET_CONFIG: options.config, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.end(options.stdin ?? '');
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    return new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  }

  const ok = (run: Run) => {
    assert.equal(run.code, 0, `exit ${run.code}\n${run.stdout}\n${run.stderr}`);
    return run.stdout;
  };

  it('answers bad usage with exit code 2 and help', async () => {
    const config = path.join(scratch, 'none.json');
    const unknown = await cli(['frobnicate'], { config });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const missing = await cli(['push', scratch, '--version', '1.0.0'], { config });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--model is required/);
    const badOption = await cli(['models', '--colour'], { config });
    assert.equal(badOption.code, 2);
    assert.match(ok(await cli(['--help'], { config })), /Usage: modelmarket <command>/);
    // Not logged in: the server's refusal, with its code and a hint (exit 1).
    const anonymous = await cli(['keys', 'list'], { config });
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.stderr, /\(UNAUTHENTICATED\)\nLog in with `modelmarket login`/);
  });

  it('takes an owner from login to a pushed, listed, licensed and called model, and a consumer to its usage', async () => {
    // The owner logs in (password on stdin); the session is kept in a file only its owner can read.
    const owner = await signUp(server, { role: 'OWNER' });
    const ownerConfig = path.join(scratch, 'owner', 'credentials.json');
    const login = ok(
      await cli(['login', '--email', owner.email], { config: ownerConfig, stdin: `${owner.password}\n` }),
    );
    assert.match(login, new RegExp(`Logged in to ${server.origin} as ${owner.email} \\(OWNER\\)`));
    assert.equal((await stat(ownerConfig)).mode & 0o777, 0o600);
    assert.equal(JSON.parse(ok(await cli(['whoami', '--json'], { config: ownerConfig }))).id, owner.id);

    // push: a model directory (two weight shards), watermarked on publish. Without evaluation data only the
    // weight change is measured (with it, the server also measures the mark on it; see push --eval below).
    const tfModel = buildMlp([784, 32, 10], 21);
    const dir = await saveModelDir(tfModel, 2);
    const slug = `cli-digits-${process.pid}`;
    const pushArgs = ['push', dir, '--model', slug, '--labels', DIGITS.join(',')];
    const withoutTask = await cli([...pushArgs, '--version', '1.0.0'], { config: ownerConfig });
    assert.equal(withoutTask.code, 2);
    assert.match(withoutTask.stderr, /does not exist: add --task/);
    const createAndPush = [...pushArgs, '--version', '1.0.0', '--task', 'image_classification', '--public'];
    const pushed = ok(await cli([...createAndPush, '--changelog', 'first'], { config: ownerConfig }));
    assert.match(pushed, new RegExp(`Published ${slug}@1\\.0\\.0`));
    assert.match(pushed, /sha256 +[0-9a-f]{64}/);
    assert.match(pushed, /watermark +256 bits in \S+, relative change \d\.\d\de-\d/);
    // --eval's examples go with the publish: labels outside the 10 classes come back refused, nothing published.
    const evalFile = path.join(scratch, 'eval.json');
    await writeFile(evalFile, JSON.stringify({ inputs: randomRows(4, 784, 9), labels: [0, 1, 2, 10] }));
    const badEval = await cli([...pushArgs, '--version', '1.0.1', '--eval', evalFile], { config: ownerConfig });
    assert.equal(badEval.code, 1);
    assert.match(badEval.stderr, /\[input\.evaluation\.labels\] \(BAD_USER_INPUT\)/);

    // models and plans list it.
    assert.match(
      ok(await cli(['models'], { config: ownerConfig })),
      new RegExp(`^${slug} +${slug} +IMAGE_CLASSIFICATION +PUBLIC +1\\.0\\.0`, 'm'),
    );
    const models = JSON.parse(ok(await cli(['models', '--json', '--search', slug], { config: ownerConfig })));
    assert.deepEqual(
      models.map((m: { slug: string }) => m.slug),
      [slug],
    );
    const plan = await createPlan(server, { token: owner.token }, slug, { predictionQuota: 1000 });
    assert.match(
      ok(await cli(['plans', slug], { config: ownerConfig })),
      new RegExp(`^${plan.id} +${slug} +Standard`, 'm'),
    );

    // The consumer takes a licence and makes an API key for an app.
    const consumer = await signUp(server);
    const consumerConfig = path.join(scratch, 'consumer.json');
    ok(
      await cli(['login', '--email', consumer.email], {
        config: consumerConfig,
        env: { MODELMARKET_PASSWORD: consumer.password },
      }),
    );
    const accepted = ok(await cli(['accept', plan.id], { config: consumerConfig }));
    assert.match(accepted, new RegExp(`for ${slug}: ACTIVE`));
    const created = JSON.parse(
      ok(
        await cli(['keys', 'create', '--name', 'app', '--scope', 'predict', '--scope', 'READ_USAGE', '--json'], {
          config: consumerConfig,
        }),
      ),
    );
    assert.match(created.secret, /^mmk_/);
    const keys = JSON.parse(ok(await cli(['keys', 'list', '--json'], { config: consumerConfig })));
    assert.deepEqual(
      keys.map((k: { id: string }) => k.id),
      [created.apiKey.id],
    );

    // The app predicts with the key: JSON instances from a file, answered by the served (owner-marked) weights,
    // which stay close to the model's own answers.
    const app = { config: path.join(scratch, 'none.json'), env: { MODELMARKET_API_KEY: created.secret } };
    const rows = randomRows(2, 784, 3);
    const inputFile = path.join(scratch, 'rows.json');
    await writeFile(inputFile, JSON.stringify(rows));
    const prediction = JSON.parse(ok(await cli(['predict', slug, '--input', inputFile, '--json'], app)));
    const expected = expectedOutputs(tfModel, rows, [784]);
    prediction.outputs.forEach((output: { values: number[] }, i: number) =>
      assertClose(output.values, expected[i]!, 0.05),
    );
    const oneRow = path.join(scratch, 'one.json');
    await writeFile(oneRow, JSON.stringify(rows[0]));
    const table = ok(await cli(['predict', slug, '--input', oneRow, '--top-k', '2'], app));
    assert.match(
      table,
      new RegExp(`^0 +${prediction.outputs[0].label} +0\\.\\d{4} +\\w+ 0\\.\\d{4}, \\w+ 0\\.\\d{4}$`, 'm'),
    );
    assert.match(table, /version 1\.0\.0 · .* ms · request [0-9a-f-]{36} · contract /);
    // An image file goes as base64: this model reads numbers, and the server's refusal comes back with its code.
    const png = path.join(scratch, 'pixel.png');
    await writeFile(
      png,
      Buffer.from(
        'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABc3UBGAAAAABJRU5ErkJggg==',
        'base64',
      ),
    );
    const refused = await cli(['predict', slug, '--input', png], app);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error: .+ \(BAD_USER_INPUT\)\n$/);

    // usage: the calls as CSV, and as a table.
    const csv = ok(await cli(['usage', '--csv'], app))
      .trim()
      .split('\n');
    assert.match(csv[0]!, /^at,prediction_id,request_id,/);
    assert.equal(
      csv.filter((line) => line.includes(`,${slug},1.0.0,`) && line.includes(',OK,')).length,
      2,
      csv.join('\n'),
    );
    assert.match(ok(await cli(['usage', '--group-by', 'model'], app)), new RegExp(`^${slug} +3 +3 +3 +1 `, 'm'));

    // A revoked key stops working at once.
    ok(await cli(['keys', 'revoke', created.apiKey.id], { config: consumerConfig }));
    const revoked = await cli(['predict', slug, '--input', inputFile], app);
    assert.equal(revoked.code, 1);
    assert.match(revoked.stderr, /\(UNAUTHENTICATED\)/);
  });

  it('refreshes an expired stored session once for concurrent runs and writes the new refresh token back', async () => {
    const user = await signUp(server);
    const config = path.join(scratch, 'refresh.json');
    ok(await cli(['login', '--email', user.email], { config, stdin: user.password }));
    const stored = JSON.parse(await readFile(config, 'utf8'));
    const session = stored.sessions[server.origin];
    session.accessToken = expiredCopy(session.accessToken);
    await writeFile(config, JSON.stringify(stored), { mode: 0o600 });
    // Three runs find the token expired together: one spends the refresh token, the others take its new pair
    // (spending it twice would end the session).
    const runs = await Promise.all([1, 2, 3].map(() => cli(['whoami'], { config })));
    for (const run of runs) assert.match(ok(run), new RegExp(user.email));
    const refreshed = JSON.parse(await readFile(config, 'utf8')).sessions[server.origin];
    assert.notEqual(refreshed.refreshToken, session.refreshToken);
    const { sid } = jwt.decode(refreshed.accessToken) as { sid: string };
    const { rows } = await server.sql.query('SELECT count(*)::int AS n FROM refresh_tokens WHERE session_id = $1', [
      sid,
    ]);
    assert.equal(rows[0].n, 2, "the log-in's refresh token and one refresh's");
    // The next run uses the stored pair as is; logout ends the session and forgets it.
    assert.match(ok(await cli(['whoami'], { config })), new RegExp(user.email));
    ok(await cli(['logout'], { config }));
    assert.equal(JSON.parse(await readFile(config, 'utf8')).sessions[server.origin], undefined);
  });

  it('refreshes a stored session about to expire before its call, not after a refusal', async () => {
    const user = await signUp(server);
    const config = path.join(scratch, 'expiring.json');
    ok(await cli(['login', '--email', user.email], { config, stdin: user.password }));
    const stored = JSON.parse(await readFile(config, 'utf8'));
    const session = stored.sessions[server.origin];
    assert.ok(session.expiresAt > Date.now(), 'login stores when the access token expires');
    // The access token is still good (the server would take it), but it expires within the refresh margin.
    session.expiresAt = Date.now() + 1_000;
    await writeFile(config, JSON.stringify(stored), { mode: 0o600 });
    assert.match(ok(await cli(['whoami'], { config })), new RegExp(user.email));
    const refreshed = JSON.parse(await readFile(config, 'utf8')).sessions[server.origin];
    assert.notEqual(refreshed.refreshToken, session.refreshToken, 'refreshed before the call');
    assert.notEqual(refreshed.accessToken, session.accessToken);
    assert.ok(refreshed.expiresAt > session.expiresAt + 10_000);
  });
});
