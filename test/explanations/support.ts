// The explain tests' common parts: the mutation with every field, and the demo models published on a test server.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { decodeEvalSet, type EvalSet } from '../../src/evaluation/eval-set.js';
import type { SingleSignature } from '../../src/models/signature.js';
import { demoArtifacts, type DemoSlug } from '../support/demo-artifacts.js';
import { createModel, publish } from '../support/models.js';
import { authHeaders, type Credentials, type TestServer } from '../support/server.js';

export const EXPLAIN = `mutation Explain($input: ExplainInput!) { explain(input: $input) {
  id requestId method baseline evaluations latencyMs contractId modelVersion { version }
  instances {
    predicted { label score } target { label score } form values shape heatmap tokens features
    check { kind attributionSum outputDifference error }
  } } }`;

export interface ExplainedInstance {
  predicted: { label: string; score: number };
  target: { label: string; score: number };
  form: 'IMAGE' | 'TEXT' | 'FEATURES';
  values: number[];
  shape: number[];
  heatmap: string | null;
  tokens: string[] | null;
  features: string[] | null;
  check: { kind: string; attributionSum: number; outputDifference: number; error: number } | null;
}

export async function explain(server: TestServer, auth: Credentials, input: Record<string, unknown>) {
  return server.gql<{ explain: { instances: ExplainedInstance[]; [key: string]: any } }>(EXPLAIN, { input }, auth);
}

/** `explain`'s answer, asserting it succeeded. */
export async function explained(server: TestServer, auth: Credentials, input: Record<string, unknown>) {
  const res = await explain(server, auth, input);
  assert.equal(res.errors, undefined, JSON.stringify(res.errors));
  return res.data!.explain;
}

/** A demo model (demo:train's output, cached) published unmarked by `auth`; with its held-out examples. */
export async function publishedDemo(
  server: TestServer,
  auth: Credentials,
  slug: DemoSlug,
): Promise<{ slug: string; evalSet: EvalSet; labels: string[]; signature: SingleSignature }> {
  const dir = path.join(await demoArtifacts(slug), slug);
  const form = new FormData();
  for (const file of ['model.json', 'model.weights.bin']) {
    form.append(file, new Blob([await readFile(path.join(dir, file))]), file);
  }
  const response = await fetch(`${server.origin}/v1/artifacts`, {
    method: 'POST',
    headers: authHeaders(auth),
    body: form,
  });
  assert.equal(response.status, 201);
  const artifact = (await response.json()) as { id: string };
  const card = JSON.parse(await readFile(path.join(dir, 'card.json'), 'utf8')) as {
    signature: SingleSignature;
    task: string;
    labels: string[];
  };
  const model = await createModel(server, auth, { task: card.task });
  await publish(server, auth, {
    model: model.slug,
    version: '1.0.0',
    artifactId: artifact.id,
    signature: card.signature,
  });
  const evalSet = decodeEvalSet(JSON.parse(await readFile(path.join(dir, 'eval.json'), 'utf8')));
  return { slug: model.slug, evalSet, labels: card.labels, signature: card.signature };
}
