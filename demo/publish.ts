// `npm run demo:publish [-- --api http://localhost:4000]` (or `npm start -- --demo`): publishes the
// demo models trained by `npm run demo:train` (training them first if needed) through the public API, as an
// owner would, offers each on a free plan that a demo consumer has accepted, and prints that consumer's log-in
// and ready-to-paste predict calls. Running it again changes nothing.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { decodeEvalSet } from '../src/evaluation/eval-set.js';
import { SecretBox } from '../src/security/secret-box.js';

const ARTIFACTS_DIR = fileURLToPath(new URL('./artifacts', import.meta.url));
export const DEMO_OWNER = { email: 'demo-owner@modelmarket.local', password: 'demo owner passphrase' };
/** Fixed like the owner's: a demo started again finds its accounts, and the printed log-ins keep working. */
export const DEMO_CONSUMER = { email: 'demo-consumer@modelmarket.local', password: 'demo consumer passphrase' };
const DEMO_ADMIN_EMAIL = 'demo-admin@modelmarket.local';
/** Characters of the demo admin's password: 120 bits of base64url. */
const DEMO_ADMIN_PASSWORD_LENGTH = 20;

/**
 * The demo's admin (`npm start -- --demo`). Unlike the owner's and consumer's, its password is derived from the
 * installation's application secret: the same across restarts of one DATA_DIR (a demo started again finds it),
 * unknown to anyone who has not read that secret, since the server listens on every address by default.
 */
export function demoAdmin(appSecret: string): { email: string; password: string } {
  const key = new SecretBox(appSecret).deriveKey('demo-admin-password');
  return { email: DEMO_ADMIN_EMAIL, password: key.toString('base64url').slice(0, DEMO_ADMIN_PASSWORD_LENGTH) };
}
const DEMO_VERSION = '1.0.0';
/** The MNIST MLP's UINT8 variant: a minor version in the free plan's range (^1.0.0). */
const UINT8_VERSION = '1.1.0';
const OPTIMIZED_SLUG = 'mnist-mlp';
const FREE_PLAN_TERMS = '1,000 predictions a month, 60 a minute';
/** The plan every demo model is offered on: free, metered, enough calls to try things. */
export const FREE_PLAN = {
  name: 'Free',
  description: `Free demo plan: ${FREE_PLAN_TERMS}.`,
  versions: '^1.0.0',
  pricePerPrediction: '0',
  currency: 'EUR',
  predictionQuota: 1000,
  period: 'MONTH',
  rateLimitPerMinute: 60,
  commercialUse: false,
  downloadAllowed: false,
  requiresApproval: false,
};

interface Card {
  name: string;
  description: string;
  slug: string;
  task: string;
  tags: string[];
  signature: unknown;
  labels: string[];
  metrics: Record<string, unknown>;
  card: Record<string, string>;
}

interface EvalExample {
  index: number;
  input: string;
}

interface GraphQLResult {
  data?: Record<string, unknown>;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** `--api` as people type it: the server's origin (`http://localhost:4000`) or its GraphQL URL. */
export function graphqlUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`--api ${raw} is not a URL; give the server's address, e.g. http://localhost:4000`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`--api ${raw} is not an http(s) URL; give the server's address, e.g. http://localhost:4000`);
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/graphql';
  return url.toString();
}

async function call(api: string, query: string, variables: unknown, token?: string) {
  let response: Response;
  try {
    response = await fetch(api, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
  } catch (error) {
    const { cause } = error as { cause?: { code?: string; message?: string } };
    const reason = cause?.code ?? cause?.message ?? (error as Error).message;
    throw new Error(`cannot reach ${api} (${reason}): is the server running (npm start)?`);
  }
  if (!(response.headers.get('content-type') ?? '').includes('json')) {
    throw new Error(`${api} answered HTTP ${response.status} without JSON: is it Modelmarket's GraphQL URL?`);
  }
  return (await response.json()) as GraphQLResult;
}

function unwrap<T>(result: GraphQLResult, field: string): T {
  if (result.errors?.length) throw new Error(`${field}: ${result.errors[0]!.message}`);
  return result.data![field] as T;
}

/** Signs the demo account up, or logs it in when it exists (a demo started before). */
async function demoAccountToken(
  api: string,
  account: { email: string; password: string },
  role: 'OWNER' | 'CONSUMER',
): Promise<string> {
  const displayName = role === 'OWNER' ? 'Demo Owner' : 'Demo Consumer';
  const signUp = await call(api, 'mutation($i: SignUpInput!) { signUp(input: $i) { accessToken } }', {
    i: { ...account, displayName, role },
  });
  if (!signUp.errors) return unwrap<{ accessToken: string }>(signUp, 'signUp').accessToken;
  if (signUp.errors[0]?.extensions?.code !== 'CONFLICT') throw new Error(signUp.errors[0]!.message);
  const logIn = await call(api, 'mutation($i: LogInInput!) { logIn(input: $i) { accessToken } }', {
    i: { email: account.email, password: account.password },
  });
  return unwrap<{ accessToken: string }>(logIn, 'logIn').accessToken;
}

/** The model's active free plan, created the first time; its id. */
async function freePlan(api: string, ownerToken: string, slug: string): Promise<string> {
  const existing = await call(
    api,
    'query($s: String!) { model(slug: $s) { plans { id name status } } }',
    { s: slug },
    ownerToken,
  );
  const { plans } = unwrap<{ plans: { id: string; name: string; status: string }[] }>(existing, 'model');
  const plan = plans.find((p) => p.name === FREE_PLAN.name && p.status === 'ACTIVE');
  if (plan) return plan.id;
  const created = await call(
    api,
    'mutation($i: CreateLicensePlanInput!) { createLicensePlan(input: $i) { id } }',
    { i: { model: slug, ...FREE_PLAN } },
    ownerToken,
  );
  return unwrap<{ id: string }>(created, 'createLicensePlan').id;
}

/** The consumer's active contract on the plan, accepted the first time. */
async function acceptedContract(api: string, consumerToken: string, planId: string): Promise<void> {
  const mine = await call(api, '{ myContracts { status plan { id } } }', {}, consumerToken);
  const contracts = unwrap<{ status: string; plan: { id: string } | null }[]>(mine, 'myContracts');
  if (contracts.some((c) => c.plan?.id === planId && c.status === 'ACTIVE')) return;
  unwrap(
    await call(api, 'mutation($p: ID!) { acceptLicense(input: { planId: $p }) { id } }', { p: planId }, consumerToken),
    'acceptLicense',
  );
}

/** Uploads a saved model exactly as `model.save(tf.io.http(url))` does: multipart model.json + weights. */
async function uploadArtifact(origin: string, dir: string, token: string): Promise<string> {
  const form = new FormData();
  form.append(
    'model.json',
    new Blob([await readFile(path.join(dir, 'model.json'))], { type: 'application/json' }),
    'model.json',
  );
  form.append(
    'model.weights.bin',
    new Blob([await readFile(path.join(dir, 'model.weights.bin'))]),
    'model.weights.bin',
  );
  const response = await fetch(`${origin}/v1/artifacts`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: form,
  });
  const body = (await response.json()) as { id?: string; error?: { message: string } };
  if (response.status !== 201 || !body.id)
    throw new Error(`upload of ${dir} failed: ${body.error?.message ?? response.status}`);
  return body.id;
}

async function publishOne(
  api: string,
  token: string,
  dir: string,
  log: (line: string) => void,
): Promise<{ card: Card; example: EvalExample | undefined }> {
  const card = JSON.parse(await readFile(path.join(dir, 'card.json'), 'utf8')) as Card;
  const evalSet = decodeEvalSet(JSON.parse(await readFile(path.join(dir, 'eval.json'), 'utf8')));
  // The held-out examples, as predict takes them: what the watermark's cost is measured on. Rounded to 5
  // decimals, which keeps 2,000 digits under the request size limit (uint8 pixels / 255 differ by 0.004).
  const evaluation = {
    inputs: Array.from({ length: evalSet.count }, (_, i) =>
      Array.from(
        evalSet.inputs.subarray(i * evalSet.exampleSize, (i + 1) * evalSet.exampleSize),
        (value) => Math.round(value * 1e5) / 1e5,
      ),
    ),
    labels: evalSet.targets,
  };
  const existing = await call(
    api,
    'query($s: String!) { model(slug: $s) { version(version: "1.0.0") { id } } }',
    { s: card.slug },
    token,
  );
  const model = unwrap<{ version: { id: string } | null } | null>(existing, 'model');
  if (!model) {
    const created = await call(
      api,
      'mutation($i: CreateModelInput!) { createModel(input: $i) { id } }',
      {
        i: {
          slug: card.slug,
          name: card.name,
          description: card.description,
          task: card.task,
          tags: card.tags,
          visibility: 'PUBLIC',
          card: card.card,
        },
      },
      token,
    );
    unwrap(created, 'createModel');
  }
  if (!model?.version) {
    const artifactId = await uploadArtifact(new URL(api).origin, dir, token);
    const publishAs = (watermark: boolean) =>
      call(
        api,
        'mutation($i: PublishModelVersionInput!) { publishModelVersion(input: $i) { id } }',
        {
          i: {
            model: card.slug,
            version: DEMO_VERSION,
            artifactId,
            signature: card.signature,
            metrics: card.metrics,
            card: card.card,
            changelog: 'Trained by npm run demo:train.',
            watermark,
            evaluation: watermark ? evaluation : null,
          },
        },
        token,
      );
    let published = await publishAs(true);
    const refusal = published.errors?.[0];
    if (refusal?.extensions?.code === 'BAD_USER_INPUT' && /watermark/i.test(refusal.message)) {
      // A model whose mark breaks the fidelity budget even when shaped: publish it unmarked.
      log(`${card.slug}: ${refusal.message} — publishing it unmarked.`);
      published = await publishAs(false);
    }
    unwrap(published, 'publishModelVersion');
  }
  if (card.slug === OPTIMIZED_SLUG) {
    await publishUint8Variant(api, token, card.slug, evaluation, log);
    await publishVerifiedMetrics(api, token, card.slug, evaluation, log);
  }
  return { card, example: evalSet.examples[0] };
}

type Evaluation = { inputs: number[][]; labels: number[] };

/** The UINT8 variant of 1.0.0 through optimizeModelVersion, unless it exists. */
async function publishUint8Variant(
  api: string,
  token: string,
  slug: string,
  evaluation: Evaluation,
  log: (line: string) => void,
): Promise<void> {
  const existing = await call(
    api,
    'query($s: String!, $v: String!) { model(slug: $s) { version(version: $v) { id } } }',
    { s: slug, v: UINT8_VERSION },
    token,
  );
  if (unwrap<{ version: { id: string } | null }>(existing, 'model').version) return;
  const optimized = unwrap<{ optimization: { sizeRatio: number; accuracyDrop: number } }>(
    await call(
      api,
      'mutation($i: OptimizeModelVersionInput!) { optimizeModelVersion(input: $i) { optimization { sizeRatio accuracyDrop } } }',
      {
        i: {
          model: slug,
          version: DEMO_VERSION,
          newVersion: UINT8_VERSION,
          quantize: 'UINT8',
          changelog: `UINT8 weights of ${DEMO_VERSION} (optimizeModelVersion).`,
          evaluation,
        },
      },
      token,
    ),
    'optimizeModelVersion',
  );
  const { sizeRatio, accuracyDrop } = optimized.optimization;
  log(
    `${slug}@${UINT8_VERSION}: the UINT8 variant of ${DEMO_VERSION}, ${sizeRatio.toFixed(2)}× smaller, ${(100 * accuracyDrop).toFixed(2)} accuracy points lost on ${evaluation.labels.length} held-out digits.`,
  );
}

/**
 * Verified metrics on 1.0.0's card, unless it has some: the held-out digits uploaded as a data set (JSONL),
 * evaluateModelVersion, waited for, publishEvaluation.
 */
async function publishVerifiedMetrics(
  api: string,
  token: string,
  slug: string,
  evaluation: Evaluation,
  log: (line: string) => void,
): Promise<void> {
  const existing = await call(
    api,
    'query($s: String!, $v: String!) { model(slug: $s) { version(version: $v) { verifiedMetrics { accuracy } } } }',
    { s: slug, v: DEMO_VERSION },
    token,
  );
  if (unwrap<{ version: { verifiedMetrics: unknown } }>(existing, 'model').version.verifiedMetrics) return;
  const jsonl = evaluation.inputs.map((input, i) => JSON.stringify({ input, label: evaluation.labels[i] })).join('\n');
  const response = await fetch(`${new URL(api).origin}/v1/datasets?name=${encodeURIComponent(`${slug} held-out`)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson', authorization: `Bearer ${token}` },
    body: jsonl,
  });
  const dataset = (await response.json()) as { id?: string; error?: { message: string } };
  if (!dataset.id) throw new Error(`data set upload failed: ${dataset.error?.message ?? response.status}`);
  const started = unwrap<{ id: string }>(
    await call(
      api,
      'mutation($i: EvaluateModelVersionInput!) { evaluateModelVersion(input: $i) { id } }',
      { i: { model: slug, version: DEMO_VERSION, dataset: dataset.id } },
      token,
    ),
    'evaluateModelVersion',
  );
  for (;;) {
    const run = unwrap<{ status: string; error: { message: string } | null }>(
      await call(
        api,
        'query($id: ID!) { evaluation(id: $id) { status error { message } } }',
        { id: started.id },
        token,
      ),
      'evaluation',
    );
    if (run.status === 'SUCCEEDED') break;
    if (run.status !== 'QUEUED' && run.status !== 'RUNNING')
      throw new Error(`evaluation of ${slug}@${DEMO_VERSION} ${run.status}: ${run.error?.message ?? ''}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const published = unwrap<{ report: { accuracy: number; examplesEvaluated: number } }>(
    await call(
      api,
      'mutation($id: ID!) { publishEvaluation(input: { id: $id }) { report { accuracy examplesEvaluated } } }',
      { id: started.id },
      token,
    ),
    'publishEvaluation',
  );
  log(
    `${slug}@${DEMO_VERSION}: verified accuracy ${(100 * published.report.accuracy).toFixed(2)}% on ${published.report.examplesEvaluated} held-out digits (evaluation ${started.id}, published to the card).`,
  );
}

function predictExample(api: string, slug: string, example: EvalExample | undefined): string {
  const input = example?.input ?? '';
  const body = JSON.stringify({
    query:
      'mutation Predict($input: PredictInput!) { predict(input: $input) { modelVersion { version } outputs { label score top { label score } } latencyMs } }',
    variables: { input: { model: slug, inputs: [input], topK: 3 } },
  });
  return `curl -s ${api} -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \\\n  -d '${body.replaceAll("'", "'\\''")}'`;
}

/** A curl line that logs `account` in and keeps its access token in the shell variable `variable`. */
function logInLine(api: string, account: { email: string; password: string }, variable: string): string {
  const body = JSON.stringify({
    query: `mutation { logIn(input: {email: ${JSON.stringify(account.email)}, password: ${JSON.stringify(account.password)}}) { accessToken } }`,
  });
  return `${variable}=$(curl -s ${api} -H 'content-type: application/json' -d '${body}' | sed -E 's/.*"accessToken":"([^"]+)".*/\\1/')`;
}

export interface PublishDemosOptions {
  log?: (line: string) => void;
  /** Where the trained demo models are (demo/artifacts); trained there first when empty. */
  artifactsDir?: string;
}

export async function publishDemos(
  api: string,
  { log = console.log, artifactsDir = ARTIFACTS_DIR }: PublishDemosOptions = {},
): Promise<void> {
  // The server first: who has none running learns it now, not after a minute of training.
  const token = await demoAccountToken(api, DEMO_OWNER, 'OWNER');
  const consumerToken = await demoAccountToken(api, DEMO_CONSUMER, 'CONSUMER');
  if (!existsSync(artifactsDir) || (await readdir(artifactsDir)).length === 0) {
    log('No demo artifacts yet: training them first (npm run demo:train, about 1–2 minutes)…');
    const trained = spawnSync(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('./train.ts', import.meta.url)), '--out', artifactsDir],
      { stdio: 'inherit' },
    );
    if (trained.status !== 0) throw new Error('demo training failed');
  }
  const dirs = (await readdir(artifactsDir, { withFileTypes: true }))
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  const published: string[] = [];
  for (const dir of dirs) {
    const { card, example } = await publishOne(api, token, path.join(artifactsDir, dir), log);
    const planId = await freePlan(api, token, card.slug);
    await acceptedContract(api, consumerToken, planId);
    const accuracy =
      typeof card.metrics.accuracy === 'number'
        ? `, held-out accuracy ${(100 * card.metrics.accuracy).toFixed(2)}%`
        : '';
    published.push(
      `\n${card.slug}@${DEMO_VERSION} (${FREE_PLAN.name} plan ${planId}${accuracy}). Try it:\n${predictExample(api, card.slug, example)}`,
    );
  }
  log(`\nDemo owner: ${DEMO_OWNER.email} / ${DEMO_OWNER.password}`);
  log(`  ${logInLine(api, DEMO_OWNER, 'OWNER_TOKEN')}`);
  log(
    `Demo consumer: ${DEMO_CONSUMER.email} / ${DEMO_CONSUMER.password}, licensed on the ${FREE_PLAN.name} plan of every demo model (free, ${FREE_PLAN_TERMS})`,
  );
  log(`  ${logInLine(api, DEMO_CONSUMER, 'TOKEN')}   # the calls below use it (valid 15 minutes)`);
  for (const lines of published) log(lines);
  log(`\nThe consumer's usage so far:\n${usageExample(api)}`);
}

function usageExample(api: string): string {
  const body = JSON.stringify({
    query: '{ usage { totals { predictions billableUnits amounts { amount currency } } } }',
  });
  return `curl -s ${api} -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" -d '${body}'`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { api: { type: 'string', default: 'http://localhost:4000/graphql' } } });
  Promise.resolve()
    .then(() => publishDemos(graphqlUrl(values.api!)))
    .catch((error: unknown) => {
      console.error(`demo:publish failed: ${(error as Error).message}`);
      process.exit(1);
    });
}
