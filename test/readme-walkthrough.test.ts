// The README's walkthrough, run as a reader runs it: every ```sh block marked `<!-- walkthrough: name -->`, in
// order, each in its own bash with `set -euo pipefail` from the project's folder, against a fresh server. Shell
// variables a block sets (ORIGIN, OWNER_TOKEN, KEY, …) carry into the next ones through a state file. Only where
// things are differs from a reader's machine: the server's address and the trained demo model's folder.
// A new block needs only its marker; a check for its answers goes in CHECKS.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { demoArtifacts } from './support/demo-artifacts.js';
import { startTestServer, type TestServer } from './support/server.js';

interface Block {
  name: string;
  script: string;
}

/** The marked blocks of README.md, in order. */
async function walkthroughBlocks(): Promise<Block[]> {
  const readme = await readFile('README.md', 'utf8');
  return [...readme.matchAll(/^<!-- walkthrough: ([\w-]+) -->\n```sh\n([\s\S]*?)^```$/gm)].map(([, name, script]) => ({
    name: name!,
    script: script!,
  }));
}

/** Every JSON object a block printed on a line of its own or run together (curl prints no newline). */
function answers(stdout: string): any[] {
  return stdout
    .replace(/}\s*{/g, '}\n{')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
}

/** What a block's answers must say, by block name; every block must also exit 0 and print no GraphQL error. */
const CHECKS: Record<string, (printed: any[], stdout: string) => void> = {
  accounts(printed) {
    assert.deepEqual(
      printed.map((answer) => answer.data.signUp?.user ?? answer.data.me),
      [
        { id: printed[0].data.signUp.user.id, email: 'ada@example.com', role: 'OWNER' },
        { id: printed[1].data.signUp.user.id, email: 'grace@example.com', role: 'CONSUMER' },
        { email: 'ada@example.com', role: 'OWNER' },
      ],
    );
  },
  publish(printed) {
    assert.equal(printed[0].data.createModel.slug, 'digits');
    const version = printed[1].data.publishModelVersion;
    assert.equal(version.version, '1.0.0');
    assert.deepEqual(version.signature.output.labels, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    assert.equal(version.signature.input.preprocessing.kind, 'image');
  },
  sell(printed, stdout) {
    const [plan, listed, contract, prediction, usage] = printed;
    const planId = plan.data.createLicensePlan.id;
    assert.deepEqual(
      listed.data.model.plans.map((p: { id: string }) => p.id),
      [planId],
    );
    assert.equal(contract.data.acceptLicense.status, 'ACTIVE');
    const [output] = prediction.data.predict.outputs;
    assert.ok(output.label >= '0' && output.label <= '9', output.label);
    assert.equal(output.top.length, 3);
    assert.equal(prediction.data.predict.contractId, contract.data.acceptLicense.id);
    assert.deepEqual(usage.data.usage.totals, {
      calls: 1,
      predictions: 1,
      billableUnits: 1,
      amounts: [{ amount: usage.data.usage.totals.amounts[0].amount, currency: 'EUR' }],
    });
    assert.equal(Number(usage.data.usage.totals.amounts[0].amount), 0.001);
    // The CSV: a header and the one prediction.
    const csv = stdout
      .slice(stdout.lastIndexOf('}') + 1)
      .trim()
      .split('\n');
    assert.equal(csv.length, 2, stdout);
    assert.match(csv[1]!, /order-42/);
  },
  cli(_printed, stdout) {
    assert.match(stdout, /^Logged in to \S+ as ada@example\.com \(OWNER\)$/m);
    assert.match(stdout, /^Published digits@1\.1\.0 \(/m);
    assert.match(stdout, /^watermark {2}256 bits in /m);
    assert.match(stdout, /^\S+ +digits +Starter +\^1\.0\.0 +0\.001 EUR/m);
    // The consumer's app is still served the version its contract is pinned to (the plan's default policy,
    // PINNED), not the owner's new one, and the CSV has both calls.
    assert.match(stdout, /^0 +\d +\d\.\d{4} +\d \d\.\d{4}, /m);
    assert.match(stdout, /^version 1\.0\.0 · [\d.]+ ms · request order-43 · contract \S+$/m);
    const csv = stdout.slice(stdout.lastIndexOf('at,prediction_id')).trim().split('\n');
    assert.deepEqual(
      csv.slice(1).map((row) =>
        row
          .split(',')
          .slice(2, 7)
          .join(',')
          .replace(/,[^,]*,[^,]*,/, ',…,'),
      ),
      ['order-42,…,digits,1.0.0', 'order-43,…,digits,1.0.0'],
    );
  },
};

describe('README walkthrough', () => {
  let server: TestServer;
  let scratch: string;
  let modelDir: string;
  before(async () => {
    [server, modelDir] = await Promise.all([
      startTestServer(),
      demoArtifacts().then((dir) => path.join(dir, 'mnist-mlp')),
    ]);
    scratch = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-walkthrough-'));
  });
  after(async () => {
    await server.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('runs every marked block of README.md, in order, and each answers what the README says', async () => {
    const blocks = await walkthroughBlocks();
    assert.deepEqual(
      Object.keys(CHECKS).filter((name) => !blocks.some((block) => block.name === name)),
      [],
      'every checked block is in the README',
    );
    const state = path.join(scratch, 'state.sh');
    await writeFile(state, '');
    for (const block of blocks) {
      const script = block.script
        .replace(/^ORIGIN=http:\/\/localhost:4000\b/m, `ORIGIN=${server.origin}`)
        .replace(/^MODEL_DIR=demo\/artifacts\/mnist-mlp$/m, `MODEL_DIR=${modelDir}`);
      const assigned = [...new Set([...script.matchAll(/^\s*([A-Za-z_]\w*)=/gm)].map(([, name]) => name!))];
      const child = spawn(
        'bash',
        [
          '-c',
          `set -euo pipefail\nsource ${JSON.stringify(state)}\n${script}\n` +
            // A name set only for one command (`KEY=… cmd`) is not a shell variable: nothing to carry.
            (assigned.length
              ? `for name in ${assigned.join(' ')}; do declare -p $name 2>/dev/null || true; done >> ${JSON.stringify(state)}\n`
              : ''),
        ],
        // The CLI keeps its session in the scratch folder, not in the home folder of whoever runs the tests.
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, MODELMARKET_CONFIG: path.join(scratch, 'credentials.json') },
        },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(code, 0, `block ${block.name} failed:\n${stderr}\n${stdout}`);
      const printed = answers(stdout);
      for (const answer of printed) assert.equal(answer.errors, undefined, `${block.name}: ${JSON.stringify(answer)}`);
      CHECKS[block.name]?.(printed, stdout);
    }
    // The substitutions found their lines: the README still defines both.
    const all = blocks.map((block) => block.script).join('\n');
    assert.match(all, /^ORIGIN=http:\/\/localhost:4000\b/m);
    assert.match(all, /^MODEL_DIR=demo\/artifacts\/mnist-mlp$/m);
  });
});
