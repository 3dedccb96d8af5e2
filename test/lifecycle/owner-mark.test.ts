// The owner mark survives optimisation: the demo MNIST MLP published with its owner mark through a real
// server, the owner's download (the marked weights) quantised, and the mark decoded from the derived bytes
// by the server's own WatermarkService. A derived artifact must also pass the server's upload validation.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeEvalSet, type EvalSet } from '../../src/evaluation/eval-set.js';
import type { TensorInput } from '../../src/inference/engine.js';
import { inMemoryRef } from '../../src/lifecycle/optimization-report.js';
import { OptimizationService, type OptimizationRequest } from '../../src/lifecycle/optimization-service.js';
import { ArtifactOptimizer } from '../../src/lifecycle/optimizer.js';
import type { WeightsArtifact } from '../../src/watermark/artifact.js';
import type { VariantRow } from '../../src/models/variants.js';
import type { WatermarkReport } from '../../src/watermark/watermark-service.js';
import { signUp, type SignedUpUser } from '../support/fixtures.js';
import { demoArtifacts } from '../support/demo-artifacts.js';
import { createModel, DIGITS, uploadFiles } from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('the owner mark on optimised variants', () => {
  let server: TestServer;
  let owner: SignedUpUser;
  let optimizer: ArtifactOptimizer;
  let service: OptimizationService;
  let evalSet: EvalSet;
  let original: { id: string; sha256: string };
  let version: { id: string; watermark: WatermarkReport };
  let markVariant: VariantRow;
  /** The owner's download: the owner-marked weights the version serves. */
  let served: WeightsArtifact;

  before(async () => {
    const dir = path.join(await demoArtifacts(), 'mnist-mlp');
    server = await startTestServer();
    owner = await signUp(server, { role: 'OWNER' });
    evalSet = decodeEvalSet(JSON.parse(await readFile(path.join(dir, 'eval.json'), 'utf8')));
    const uploaded = await uploadFiles(
      server,
      { token: owner.token },
      await readFile(path.join(dir, 'model.json')),
      await readFile(path.join(dir, 'model.weights.bin')),
    );
    assert.equal(uploaded.status, 201, JSON.stringify(uploaded.body));
    original = uploaded.body as typeof original;
    const model = await createModel(server, { token: owner.token });
    // The examples the mark's cost is measured on, as the demo publisher sends them (5 decimals).
    const examples = 400;
    const evaluation = {
      inputs: Array.from({ length: examples }, (_, i) =>
        Array.from(
          evalSet.inputs.subarray(i * evalSet.exampleSize, (i + 1) * evalSet.exampleSize),
          (v) => Math.round(v * 1e5) / 1e5,
        ),
      ),
      labels: evalSet.targets.slice(0, examples),
    };
    const published = await server.gql(
      `mutation P($input: PublishModelVersionInput!) { publishModelVersion(input: $input) {
        id watermark { marked bits carriers } } }`,
      {
        input: {
          model: model.slug,
          version: '1.0.0',
          artifactId: original.id,
          labels: DIGITS,
          watermark: true,
          evaluation,
        },
      },
      { token: owner.token },
    );
    assert.equal(published.errors, undefined, JSON.stringify(published.errors));
    version = published.data!.publishModelVersion;
    assert.equal(version.watermark.marked, true);
    const download = async (file: string) => {
      const response = await fetch(`${server.origin}/v1/versions/${version.id}/${file}`, {
        headers: { authorization: `Bearer ${owner.token}` },
      });
      assert.equal(response.status, 200, file);
      return Buffer.from(await response.arrayBuffer());
    };
    served = {
      modelJson: JSON.parse((await download('model.json')).toString('utf8')),
      weights: await download('model.weights.bin'),
    };
    markVariant = (await server.app.services.variants.find(version.id, 'OWNER_MARKED'))!;
    optimizer = new ArtifactOptimizer(1_000_000);
    const { engine, watermarks } = server.app.services;
    service = new OptimizationService(optimizer, engine, watermarks, { batch1: 5, batch64: 3 });
  });
  after(async () => {
    await optimizer?.close();
    await server?.close();
  });

  const request = (parent: WeightsArtifact, options: Partial<OptimizationRequest>): OptimizationRequest => ({
    versionId: version.id,
    parent: inMemoryRef(parent),
    originalSha256: original.sha256,
    ownerMark: markVariant,
    evaluation: {
      tensor: {
        data: evalSet.inputs,
        shape: [evalSet.count, ...evalSet.shape],
        dtype: evalSet.dtype,
      } as TensorInput,
      labels: evalSet.targets,
    },
    ...options,
  });

  // Each run marks a new version (its own key), so accuracies move a little between runs: the pruned variant
  // (about one point lost on the unmarked MLP) gets two points of budget, as this test is about the mark.
  const variants = [
    { params: { quantize: 'UINT8', pruneSparsity: null }, maxAccuracyDrop: 0.01 },
    { params: { quantize: 'FLOAT16', pruneSparsity: null }, maxAccuracyDrop: 0.001 },
    { params: { quantize: 'UINT8', pruneSparsity: 0.5 }, maxAccuracyDrop: 0.02 },
  ] as const;
  for (const { params, maxAccuracyDrop } of variants) {
    const { quantize, pruneSparsity } = params;
    const name = `${quantize}${pruneSparsity ? ` after ${100 * pruneSparsity}% pruning` : ''}`;
    it(`survives ${name}: the mark the served weights carry reads back from the derived ones`, async (t) => {
      const variant = await service.derive(request(served, { ...params, maxAccuracyDrop }));
      const { ownerMark } = variant.report;
      assert.ok(ownerMark, 'a marked parent is checked');
      t.diagnostic(`owner mark bits: ${JSON.stringify(ownerMark)}`);
      assert.equal(ownerMark.before.totalBits, version.watermark.bits);
      assert.equal(ownerMark.before.matchedBits, version.watermark.bits);
      assert.ok(ownerMark.after.holds, JSON.stringify(ownerMark));
      assert.ok(
        ownerMark.after.matchedBits >= ownerMark.before.matchedBits - 2,
        `${ownerMark.after.matchedBits} of ${ownerMark.after.totalBits} bits after ${name}`,
      );
      assert.ok(variant.report.accuracyDrop <= maxAccuracyDrop + 1e-9, JSON.stringify(variant.report));
      assert.deepEqual(variant.params, params);

      // The server's own upload validation takes the quantised manifest and sizes it right.
      const reuploaded = await uploadFiles(
        server,
        { token: owner.token },
        variant.stored.modelJson,
        variant.stored.weights,
      );
      assert.equal(reuploaded.status, 201, JSON.stringify(reuploaded.body));
      assert.equal(reuploaded.body.sizeBytes, variant.report.derived.bytes);
      assert.equal(
        reuploaded.body.sha256,
        variant.sha256,
        'the optimizer hashes the stored form as uploads are hashed',
      );
    });
  }

  it('fails a derivation that does not carry the mark, with both readings', async () => {
    // Derived from the unmarked upload instead of the served weights: a pipeline bug the check must catch.
    const unmarked = await server.app.services.artifacts.read(original.sha256);
    const parent = { modelJson: JSON.parse(unmarked.modelJson.toString('utf8')), weights: unmarked.weights };
    await assert.rejects(
      () => service.derive(request(parent, { quantize: 'UINT8' })),
      (error: { message: string; extensions: Record<string, any> }) => {
        assert.equal(error.extensions.code, 'BAD_USER_INPUT');
        assert.match(error.message, /owner watermark does not survive/);
        const { before: beforeReading, after: afterReading } = error.extensions.measurements.ownerMark;
        assert.equal(afterReading.holds, false);
        assert.ok(afterReading.matchedBits < afterReading.threshold, JSON.stringify(afterReading));
        assert.equal(beforeReading.totalBits, version.watermark.bits);
        return true;
      },
    );
  });
});
