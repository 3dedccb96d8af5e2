// `npx modelmarket …`: the command line, built on the typed client (src/client) and nothing else of the server.
// bin/modelmarket.mjs passes argv, the environment and the standard streams, so tests run it as a real process.
import { createInterface } from 'node:readline/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import cliProgress from 'cli-progress';
import {
  ModelmarketClient,
  ModelmarketError,
  type ApiScope,
  type ModelTask,
  type PredictMutation,
  type PublishModelVersionMutation,
  type UsageGroupBy,
} from '../client/index.js';
import { CredentialStore, credentialsPath } from './credentials.js';
import { readEvaluation, readInstances, readLabels, readSignature } from './inputs.js';
import { json, table, UsageError } from './output.js';

type Env = Record<string, string | undefined>;

export interface Streams {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

const DEFAULT_URL = 'http://localhost:4000';
const SCOPES = ['PREDICT', 'READ_USAGE', 'MANAGE_MODELS', 'DOWNLOAD'];
const TASKS = ['IMAGE_CLASSIFICATION', 'TEXT_CLASSIFICATION', 'TABULAR_CLASSIFICATION', 'REGRESSION'];
const GROUPS = ['DAY', 'MODEL', 'CONTRACT', 'CONSUMER'];

const HELP = `Usage: modelmarket <command> [options]

Commands:
  login [--email <e-mail>]              log in (password from MODELMARKET_PASSWORD, stdin or a prompt)
  logout                                end the stored session
  whoami                                the account the credentials belong to
  push <dir> --model <slug> --version <semver> [--eval <file>] [--labels <a,b,…|@file>]
       [--signature <file>] [--changelog <text>] [--no-watermark] [--task <TASK> [--name <name>] [--public]]
                                        upload a TensorFlow.js model directory and publish it as a version
                                        (--task creates the model when it does not exist yet; --signature
                                        is a JSON signature, or a model card holding one)
  predict <model> --input <file|image> [--input …] [--version <v>] [--top-k <n>] [--request-id <id>]
       [--contract <id>]                run a model on JSON instances or PNG/JPEG/WebP images
  models [--search <words>] [--task <TASK>]
                                        the models you can see
  plans [<model>]                       licence plans (of one model, or of every model you can see)
  accept <plan-id>                      take a licence under a plan
  keys create --name <name> --scope <SCOPE> [--scope …]
  keys list
  keys revoke <key-id>                  API keys (scopes: ${SCOPES.join(', ')})
  usage [--csv] [--from <date>] [--to <date>] [--model <slug>] [--group-by DAY|MODEL|CONTRACT|CONSUMER]

Options for every command:
  --url <url>    the server (default: MODELMARKET_URL, else the last login's, else ${DEFAULT_URL})
  --json         print JSON for scripts instead of tables
  -h, --help     this help

Credentials: MODELMARKET_API_KEY (an API key) or the session stored by \`login\` in
$MODELMARKET_CONFIG (default ~/.config/modelmarket/credentials.json, mode 0600).
Exit codes: 0 done, 1 the command failed (the server's message and code on stderr), 2 bad usage.
`;

type Options = NonNullable<ParseArgsConfig['options']>;

const GLOBAL_OPTIONS: Options = {
  url: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

interface Context {
  env: Env;
  io: Streams;
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  print(text: string): void;
  store: CredentialStore;
  url(): Promise<string>;
  client(): Promise<ModelmarketClient>;
}

interface Command {
  options: Options;
  run(context: Context): Promise<void>;
}

const str = (context: Context, name: string) => context.values[name] as string | undefined;
const list = (context: Context, name: string) => (context.values[name] as string[] | undefined) ?? [];

function required(context: Context, name: string): string {
  const value = str(context, name);
  if (!value) throw new UsageError(`--${name} is required`);
  return value;
}

function positional(context: Context, index: number, what: string): string {
  const value = context.positionals[index];
  if (!value) throw new UsageError(`${what} is required`);
  return value;
}

function oneOf<T extends string>(value: string | undefined, allowed: string[], name: string): T | undefined {
  if (value === undefined) return undefined;
  const upper = value.toUpperCase();
  if (!allowed.includes(upper)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}`);
  return upper as T;
}

function integer(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,6}$/.test(value)) throw new UsageError(`--${name} must be a whole number`);
  return Number(value);
}

async function readPassword(context: Context, prompt: string): Promise<string> {
  if (context.env.MODELMARKET_PASSWORD) return context.env.MODELMARKET_PASSWORD;
  const { stdin, stderr } = context.io;
  if (!stdin.isTTY) {
    // `echo "$PASSWORD" | modelmarket login --email …`: the first line.
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(Buffer.from(chunk as Buffer));
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  // A prompt that does not echo what is typed.
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (!muted) stderr.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input: stdin, output, terminal: true });
  try {
    const answer = rl.question(prompt);
    muted = true;
    const password = await answer;
    stderr.write('\n');
    return password;
  } finally {
    rl.close();
  }
}

async function readLine(context: Context, prompt: string): Promise<string> {
  if (!context.io.stdin.isTTY) throw new UsageError('--email is required');
  const rl = createInterface({ input: context.io.stdin, output: context.io.stderr });
  try {
    return (await rl.question(prompt)).trim();
  } finally {
    rl.close();
  }
}

function formatWatermark(version: PublishModelVersionMutation['publishModelVersion']): string {
  const mark = version.watermark;
  if (!mark.marked) return 'not marked (opted out)';
  const parts = [`${mark.bits ?? '?'} bits in ${mark.tensor ?? '?'}`];
  if (mark.relativeChange != null) parts.push(`relative change ${mark.relativeChange.toExponential(2)}`);
  if (mark.evaluationSamples != null && mark.agreement != null) {
    parts.push(`agreement ${(100 * mark.agreement).toFixed(2)}% on ${mark.evaluationSamples} examples`);
  }
  if (mark.accuracyBefore != null && mark.accuracyAfter != null) {
    parts.push(`accuracy ${(100 * mark.accuracyBefore).toFixed(2)}% → ${(100 * mark.accuracyAfter).toFixed(2)}%`);
  }
  return parts.join(', ');
}

function formatPrediction(prediction: NonNullable<PredictMutation['predict']>): string {
  const rows = prediction.outputs.map((output, index) => {
    if (output.label == null) return [index, '-', '-', output.values.map((v) => v.toPrecision(6)).join(' ')];
    const top = (output.top ?? []).map((t) => `${t.label} ${t.score.toFixed(4)}`).join(', ');
    return [index, output.label, output.score?.toFixed(4), top];
  });
  const footer = [
    `version ${prediction.modelVersion.version}`,
    `${prediction.latencyMs.toFixed(1)} ms`,
    `request ${prediction.requestId}`,
    ...(prediction.contractId ? [`contract ${prediction.contractId}`] : []),
  ].join(' · ');
  return `${table(['#', 'label', 'score', 'top / values'], rows)}\n${footer}`;
}

const COMMANDS: Record<string, Command> = {
  login: {
    options: { email: { type: 'string' } },
    async run(context) {
      const url = await context.url();
      const email = str(context, 'email') ?? (await readLine(context, 'E-mail: '));
      const password = await readPassword(context, 'Password: ');
      const client = new ModelmarketClient({ url });
      const session = await client.logIn(email, password);
      const tokens = client.session!;
      await context.store.save(url, { ...tokens, email: session.user.email ?? email });
      if (context.values.json) context.print(json({ url, user: session.user }));
      else context.print(`Logged in to ${url} as ${session.user.email} (${session.user.role})`);
    },
  },

  logout: {
    options: {},
    async run(context) {
      const url = await context.url();
      const stored = await context.store.session(url);
      if (stored) {
        // The session ends on the server too; a session the server already ended is simply forgotten.
        await new ModelmarketClient({ url, ...stored }).logOut().catch(() => false);
        await context.store.save(url, undefined);
      }
      context.print(stored ? `Logged out of ${url}` : `Not logged in to ${url}`);
    },
  },

  whoami: {
    options: {},
    async run(context) {
      const me = await (await context.client()).me();
      if (!me) throw new ModelmarketError('Not logged in: run `modelmarket login`', { code: 'UNAUTHENTICATED' });
      context.print(context.values.json ? json(me) : `${me.email ?? me.displayName} (${me.role}, ${me.id})`);
    },
  },

  push: {
    options: {
      model: { type: 'string' },
      version: { type: 'string' },
      eval: { type: 'string' },
      labels: { type: 'string' },
      signature: { type: 'string' },
      changelog: { type: 'string' },
      'no-watermark': { type: 'boolean' },
      task: { type: 'string' },
      name: { type: 'string' },
      public: { type: 'boolean' },
    },
    async run(context) {
      const dir = positional(context, 0, 'the model directory');
      const slug = required(context, 'model');
      const version = required(context, 'version');
      const task = oneOf<ModelTask>(str(context, 'task'), TASKS, 'task');
      const labelsOption = str(context, 'labels');
      const labels = labelsOption === undefined ? undefined : await readLabels(labelsOption);
      const evalFile = str(context, 'eval');
      const evaluation = evalFile === undefined ? undefined : await readEvaluation(evalFile);
      const signatureFile = str(context, 'signature');
      const signature = signatureFile === undefined ? undefined : await readSignature(signatureFile);
      const client = await context.client();
      // Before the upload: a missing model is found out without sending megabytes first.
      if (!(await client.model(slug))) {
        if (!task) throw new UsageError(`model ${slug} does not exist: add --task (and --name, --public) to create it`);
        await client.createModel({
          slug,
          name: str(context, 'name') ?? slug,
          task,
          visibility: context.values.public ? 'PUBLIC' : 'PRIVATE',
        });
      }
      const bar = context.io.stderr.isTTY
        ? new cliProgress.SingleBar(
            {
              format: 'upload |{bar}| {percentage}% {value}/{total} bytes',
              stream: context.io.stderr,
              hideCursor: true,
            },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      let artifact;
      try {
        artifact = await client.uploadArtifact(dir, {
          onProgress: (sent, total) => {
            if (!bar) return;
            if (sent === 0 || bar.getTotal() !== total) bar.start(total, sent);
            else bar.update(sent);
          },
        });
      } finally {
        bar?.stop();
      }
      const published = await client.publishModelVersion({
        model: slug,
        version,
        artifactId: artifact.id,
        labels,
        signature,
        changelog: str(context, 'changelog'),
        watermark: !context.values['no-watermark'],
        evaluation,
      });
      if (context.values.json) {
        context.print(json({ model: slug, artifact, version: published }));
        return;
      }
      context.print(
        [
          `Published ${slug}@${published.version} (${published.id})`,
          `sha256     ${published.sha256}`,
          `size       ${published.sizeBytes} bytes`,
          `aliases    ${published.aliases.join(', ') || '-'}`,
          `watermark  ${formatWatermark(published)}`,
        ].join('\n'),
      );
    },
  },

  predict: {
    options: {
      input: { type: 'string', multiple: true },
      version: { type: 'string' },
      'top-k': { type: 'string' },
      'request-id': { type: 'string' },
      contract: { type: 'string' },
    },
    async run(context) {
      const model = positional(context, 0, 'the model');
      const files = list(context, 'input');
      if (files.length === 0) throw new UsageError('--input is required');
      const inputs = (await Promise.all(files.map(readInstances))).flat();
      const prediction = await (
        await context.client()
      ).predict({
        model,
        version: str(context, 'version'),
        inputs,
        topK: integer(str(context, 'top-k'), 'top-k'),
        requestId: str(context, 'request-id'),
        contractId: str(context, 'contract'),
      });
      context.print(context.values.json ? json(prediction) : formatPrediction(prediction));
    },
  },

  models: {
    options: { search: { type: 'string' }, task: { type: 'string' } },
    async run(context) {
      const client = await context.client();
      const task = oneOf<ModelTask>(str(context, 'task'), TASKS, 'task');
      const nodes = [];
      let after: string | undefined;
      do {
        const page = await client.models({ search: str(context, 'search'), task }, { first: 50, after });
        nodes.push(...page.edges.map((edge) => edge.node));
        after = page.pageInfo.hasNextPage ? (page.pageInfo.endCursor ?? undefined) : undefined;
      } while (after);
      if (context.values.json) return context.print(json(nodes));
      const rows = nodes.map((m) => [m.slug, m.name, m.task, m.visibility, m.version?.version, m.owner.displayName]);
      context.print(table(['slug', 'name', 'task', 'visibility', 'latest', 'owner'], rows));
    },
  },

  plans: {
    options: {},
    async run(context) {
      const plans = await (await context.client()).plans(context.positionals[0]);
      if (context.values.json) return context.print(json(plans));
      const rows = plans.map((p) => [
        p.id,
        p.model,
        p.name,
        p.versions,
        `${p.pricePerPrediction} ${p.currency}`,
        p.predictionQuota == null ? 'unlimited' : `${p.predictionQuota}/${p.period.toLowerCase()}`,
        p.rateLimitPerMinute == null ? '-' : `${p.rateLimitPerMinute}/min`,
        p.requiresApproval ? 'yes' : 'no',
        p.status,
      ]);
      const headers = ['id', 'model', 'name', 'versions', 'price', 'quota', 'rate', 'approval', 'status'];
      context.print(table(headers, rows));
    },
  },

  accept: {
    options: {},
    async run(context) {
      const contract = await (await context.client()).acceptLicense(positional(context, 0, 'the plan id'));
      if (context.values.json) return context.print(json(contract));
      context.print(
        `Contract ${contract.id} for ${contract.model?.slug ?? '-'}: ${contract.status}` +
          (contract.status === 'PENDING' ? ' (waiting for the owner to approve it)' : ''),
      );
    },
  },

  keys: {
    options: { name: { type: 'string' }, scope: { type: 'string', multiple: true } },
    async run(context) {
      const action = positional(context, 0, 'create, list or revoke');
      const client = await context.client();
      if (action === 'create') {
        const name = required(context, 'name');
        const scopes = list(context, 'scope').map((s) => oneOf<ApiScope>(s, SCOPES, 'scope')!);
        if (scopes.length === 0) throw new UsageError(`--scope is required (${SCOPES.join(', ')})`);
        const created = await client.createApiKey(name, scopes);
        if (context.values.json) return context.print(json(created));
        context.print(
          `${created.secret}\nAPI key ${created.apiKey.id} (${scopes.join(', ')}): the secret is shown once`,
        );
      } else if (action === 'list') {
        const keys = await client.apiKeys();
        if (context.values.json) return context.print(json(keys));
        const rows = keys.map((k) => [k.id, k.name, k.prefix, k.scopes.join(','), k.lastUsedAt, k.revokedAt]);
        context.print(table(['id', 'name', 'prefix', 'scopes', 'last used', 'revoked'], rows));
      } else if (action === 'revoke') {
        const key = await client.revokeApiKey(positional(context, 1, 'the key id'));
        context.print(context.values.json ? json(key) : `Revoked ${key.id} (${key.name})`);
      } else {
        throw new UsageError(`keys ${action}: expected create, list or revoke`);
      }
    },
  },

  usage: {
    options: {
      csv: { type: 'boolean' },
      from: { type: 'string' },
      to: { type: 'string' },
      model: { type: 'string' },
      'group-by': { type: 'string' },
    },
    async run(context) {
      const client = await context.client();
      const filter = { from: str(context, 'from'), to: str(context, 'to'), model: str(context, 'model') };
      if (context.values.csv) {
        await pipeline(await client.usageCsv(filter), context.io.stdout, { end: false });
        return;
      }
      const groupBy = oneOf<UsageGroupBy>(str(context, 'group-by'), GROUPS, 'group-by');
      const usage = await client.usage({ ...filter, groupBy });
      if (context.values.json) return context.print(json(usage));
      const buckets = [...usage.series.map((b) => ({ key: b.key, f: b.figures })), { key: 'total', f: usage.totals }];
      const rows = buckets.map(({ key, f }) => [
        key,
        f.calls,
        f.predictions,
        f.billableUnits,
        f.errors,
        f.downloads,
        f.p50LatencyMs?.toFixed(1),
        f.amounts.map((a) => `${a.amount} ${a.currency}`).join(', ') || '-',
      ]);
      const headers = ['key', 'calls', 'predictions', 'billable', 'errors', 'downloads', 'p50 ms', 'amount'];
      context.print(table(headers, rows));
    },
  },
};

function parse(argv: string[], options: Options) {
  try {
    return parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Runs one command; resolves with the exit code. */
export async function main(argv: string[], env: Env, io: Streams): Promise<number> {
  const [name, ...rest] = argv;
  const command = name === undefined ? undefined : COMMANDS[name];
  if (!command) {
    const asked = name === undefined || name === '--help' || name === '-h';
    if (!asked) io.stderr.write(`modelmarket: unknown command ${JSON.stringify(name)}\n\n`);
    (asked ? io.stdout : io.stderr).write(HELP);
    return asked ? 0 : 2;
  }
  const store = new CredentialStore(credentialsPath(env));
  try {
    const { values, positionals } = parse(rest, command.options);
    if (values.help) {
      io.stdout.write(HELP);
      return 0;
    }
    const url = async () =>
      (values.url as string | undefined) ?? env.MODELMARKET_URL ?? (await store.read()).defaultUrl ?? DEFAULT_URL;
    const context: Context = {
      env,
      io,
      values: values as Context['values'],
      positionals,
      store,
      print: (text) => io.stdout.write(`${text}\n`),
      url,
      async client() {
        const server = await url();
        if (env.MODELMARKET_API_KEY) return new ModelmarketClient({ url: server, apiKey: env.MODELMARKET_API_KEY });
        const stored = await store.session(server);
        return new ModelmarketClient({
          url: server,
          accessToken: stored?.accessToken,
          refreshToken: stored?.refreshToken,
          expiresAt: stored?.expiresAt,
          // A refresh spends the stored refresh token: under the file's lock, a pair another run stored since is
          // taken as is, else the refreshed pair is written back before it is used.
          sharedRefresh: (session, refresh) =>
            store.withLock(async () => {
              const latest = await store.session(server);
              if (latest && latest.accessToken !== session.accessToken) return latest;
              const tokens = await refresh(latest?.refreshToken ?? session.refreshToken);
              await store.save(server, { ...tokens, email: stored?.email ?? '' });
              return tokens;
            }),
        });
      },
    };
    await command.run(context);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`modelmarket ${name}: ${error.message}\nRun \`modelmarket --help\` for usage.\n`);
      return 2;
    }
    if (error instanceof ModelmarketError) {
      const hint =
        error.code === 'UNAUTHENTICATED' && !env.MODELMARKET_API_KEY
          ? '\nLog in with `modelmarket login`, or set MODELMARKET_API_KEY.'
          : '';
      const code = error.reason ? `${error.code}, ${error.reason}` : error.code;
      const field = error.field ? ` [${error.field}]` : '';
      io.stderr.write(`error: ${error.message}${field} (${code})${hint}\n`);
      return 1;
    }
    io.stderr.write(`error: ${(error as Error).message ?? String(error)}\n`);
    return 1;
  }
}
