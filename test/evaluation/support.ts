// Data sets and the demo MNIST classifier for the evaluation tests: the demo's held-out digits (eval.json) as a JSONL
// data set in the signature's own format, the model published as an owner publishes it, and the calls to poll a run.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeEvalSet, type EvalSet } from '../../src/evaluation/eval-set.js';
import { demoArtifacts } from '../support/demo-artifacts.js';
import { createModel } from '../support/models.js';
import { authHeaders, type Credentials, type GraphQLResponse, type TestServer } from '../support/server.js';

export interface DemoMnist {
  dir: string;
  evalSet: EvalSet;
  signature: unknown;
}

let demo: Promise<DemoMnist> | undefined;

/** The demo MNIST MLP's files, signature and held-out digits (trained once, cached: test/support/demo-artifacts.ts). */
export function demoMnist(): Promise<DemoMnist> {
  return (demo ??= (async () => {
    const dir = path.join(await demoArtifacts(), 'mnist-mlp');
    const evalSet = decodeEvalSet(JSON.parse(await readFile(path.join(dir, 'eval.json'), 'utf8')));
    const card = JSON.parse(await readFile(path.join(dir, 'card.json'), 'utf8')) as { signature: unknown };
    return { dir, evalSet, signature: card.signature };
  })());
}

/** Example `i` of the eval set as predict takes it: 784 numbers in 0..1. */
export function digit(evalSet: EvalSet, i: number): number[] {
  return Array.from(evalSet.inputs.subarray(i * evalSet.exampleSize, (i + 1) * evalSet.exampleSize));
}

/** The first `count` held-out digits as JSONL lines of {"input": [...784], "label": "7"}. */
export function mnistJsonl(evalSet: EvalSet, count: number, from = 0): string {
  const lines: string[] = [];
  for (let i = from; i < from + count; i++) {
    lines.push(JSON.stringify({ input: digit(evalSet, i), label: evalSet.labels[evalSet.targets[i]!] }));
  }
  return `${lines.join('\n')}\n`;
}

/** Publishes the demo MNIST MLP (its files uploaded as multipart, like curl -F) as `version` of a new or given model. */
export async function publishDemoMnist(
  server: TestServer,
  auth: Credentials,
  options: { slug?: string; version?: string; watermark?: boolean } = {},
): Promise<{ slug: string; versionId: string }> {
  const { dir, signature } = await demoMnist();
  const form = new FormData();
  for (const file of ['model.json', 'model.weights.bin']) {
    form.append(file, new Blob([await readFile(path.join(dir, file))]), file);
  }
  const uploaded = await fetch(`${server.origin}/v1/artifacts`, {
    method: 'POST',
    headers: authHeaders(auth),
    body: form,
  });
  assert.equal(uploaded.status, 201, await uploaded.clone().text());
  const artifact = (await uploaded.json()) as { id: string };
  const slug = options.slug ?? (await createModel(server, auth)).slug;
  const res = await server.gql(
    `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) { id } }`,
    {
      input: {
        model: slug,
        version: options.version ?? '1.0.0',
        artifactId: artifact.id,
        signature,
        watermark: options.watermark ?? false,
      },
    },
    auth,
  );
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return { slug, versionId: res.data!.publishModelVersion.id };
}

/** POST /v1/datasets; the answer's status and JSON body. */
export async function uploadDataset(
  server: TestServer,
  auth: Credentials,
  body: string | Buffer,
  contentType = 'application/x-ndjson',
  query = '',
): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.origin}/v1/datasets${query}`, {
    method: 'POST',
    headers: { 'content-type': contentType, ...authHeaders(auth) },
    body,
  });
  return { status: response.status, body: await response.json() };
}

/** Uploads a data set that must be accepted; its id. */
export async function datasetId(server: TestServer, auth: Credentials, body: string, contentType?: string) {
  const { status, body: answer } = await uploadDataset(server, auth, body, contentType);
  assert.ok(status === 201 || status === 200, JSON.stringify(answer));
  return answer.id as string;
}

export const EVALUATION_FIELDS = `id status progress { fraction examplesEvaluated examplesTotal }
  report { accuracy macroF1 perClass { label precision recall f1 support } confusionMatrix labels examplesEvaluated
    datasetSha256 durationMs partial }
  error { code message } datasetSha256 comparisonId publishedAt createdAt finishedAt version { id version }`;

export const EVALUATE = `mutation E($input: EvaluateModelVersionInput!) { evaluateModelVersion(input: $input) { ${EVALUATION_FIELDS} } }`;
export const EVALUATION = `query E($id: ID!) { evaluation(id: $id) { ${EVALUATION_FIELDS} } }`;

/** Starts an evaluation that must be accepted; the answer (QUEUED). */
export async function evaluate(server: TestServer, auth: Credentials, input: Record<string, unknown>) {
  const res = await server.gql(EVALUATE, { input }, auth);
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.evaluateModelVersion;
}

const ENDED = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

/** Polls `evaluation(id)` until `done` holds of it (default: it ended). */
export async function waitForEvaluation(
  server: TestServer,
  auth: Credentials,
  id: string,
  done: (evaluation: any) => boolean = (e) => ENDED.has(e.status),
  timeoutMs = 60_000,
): Promise<any> {
  for (const deadline = Date.now() + timeoutMs; ;) {
    const res: GraphQLResponse = await server.gql(EVALUATION, { id }, auth);
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    if (done(res.data!.evaluation)) return res.data!.evaluation;
    assert.ok(Date.now() < deadline, `evaluation ${id} still ${JSON.stringify(res.data!.evaluation.status)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
