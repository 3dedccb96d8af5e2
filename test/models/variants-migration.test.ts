// The artifact_variants migration on a database of the previous shape: rows written as the watermark-only slots
// stored them (model_versions.served_sha256 + watermark, licensee_copies, watermark_calibrations) are carried
// over, the old slots dropped, and a server started on it serves and reports what it did before.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type * as tf from '@tensorflow/tfjs';
import pg from 'pg';
import { hashPassword } from '../../src/auth/password.js';
import { applyMigrations, listMigrations } from '../../src/db/migrate.js';
import { withDatabase } from '../support/database-url.js';
import { logIn } from '../support/fixtures.js';
import {
  assertClose,
  buildMlp,
  DIGITS,
  expectedOutputs,
  PREDICT,
  randomRows,
  storedArtifactOf,
} from '../support/models.js';
import { startTestServer, type TestServer } from '../support/server.js';

const MIGRATION = '20261211000000_artifact_variants';

const floats = (values: number[]) => Buffer.from(new Float32Array(values).buffer);

describe('migration 20261211000000_artifact_variants', () => {
  const { MM_TEST_ADMIN_URL: adminUrl, MM_TEST_RUN_ID: runId } = process.env;
  const name = `${runId}_${randomBytes(4).toString('hex')}`;
  const url = withDatabase(adminUrl!, name);
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const email = `owner-${randomBytes(4).toString('hex')}@example.com`;
  // Marked, opted out, and published before marking existed (no report at all).
  const ids = { owner: randomUUID(), model: randomUUID(), artifact: randomUUID(), contract: randomUUID() };
  const versions = { marked: randomUUID(), optedOut: randomUUID(), unmarked: randomUUID() };
  const report = {
    marked: true,
    tensor: 'dense_Dense1/kernel',
    carriers: ['dense_Dense1/kernel', 'dense_Dense2/kernel'],
    bits: 64,
    slack: [0.75, 0.25],
    size: 12544,
    margin: 1.5,
    agreement: 1,
    evaluationSamples: 200,
  };
  const mean = [0.5, -0.25];
  const covariance = [1, 0.1, 0.1, 2];
  let upload: Awaited<ReturnType<typeof storedArtifactOf>>;
  let marked: Awaited<ReturnType<typeof storedArtifactOf>>;
  let copy: Awaited<ReturnType<typeof storedArtifactOf>>;
  let uploadModel: tf.LayersModel;
  let markedModel: tf.LayersModel;
  let server: TestServer;

  before(async () => {
    // The "marked" weights are another model, so what predict answers says which bytes it serves.
    uploadModel = buildMlp([784, 16, 10], 11);
    markedModel = buildMlp([784, 16, 10], 12);
    [upload, marked, copy] = await Promise.all([
      storedArtifactOf(uploadModel),
      storedArtifactOf(markedModel),
      storedArtifactOf(buildMlp([784, 16, 10], 13)),
    ]);

    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`);
    await admin.end();
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const all = await listMigrations();
      const index = all.findIndex((m) => m.name === MIGRATION);
      assert.ok(index > 0, `${MIGRATION} is in prisma/migrations`);
      await applyMigrations(pool, all.slice(0, index));

      const q = (text: string, values: unknown[]) => pool.query(text, values);
      await q(
        `INSERT INTO users (id, email, display_name, role, password_hash, updated_at) VALUES ($1, $2, 'Owner', 'OWNER', $3, now())`,
        [ids.owner, email, await hashPassword(password, { log2N: 12, r: 8, p: 1 })],
      );
      await q(
        `INSERT INTO models (id, slug, name, task, visibility, owner_id, updated_at)
         VALUES ($1, $2, 'Digits', 'IMAGE_CLASSIFICATION', 'PRIVATE', $3, now())`,
        [ids.model, `migrated-${randomBytes(3).toString('hex')}`, ids.owner],
      );
      for (const blob of [upload, marked, copy]) {
        await q(`INSERT INTO artifact_blobs (sha256, model_json, weights, size_bytes) VALUES ($1, $2, $3, $4)`, [
          blob.sha256,
          blob.modelJson,
          blob.weights,
          blob.modelJson.byteLength + blob.weights.byteLength,
        ]);
      }
      await q(`INSERT INTO artifacts (id, sha256, size_bytes, uploaded_by_id) VALUES ($1, $2, 1, $3)`, [
        ids.artifact,
        upload.sha256,
        ids.owner,
      ]);
      const signature = {
        input: { shape: [784], dtype: 'float32', preprocessing: { kind: 'none' } },
        output: { kind: 'classification', labels: DIGITS },
      };
      const version = (id: string, number: string, served: string | null, watermark: object | null) =>
        q(
          `INSERT INTO model_versions (id, model_id, version, artifact_id, signature, labels, published_by_id, served_sha256, watermark)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          [id, ids.model, number, ids.artifact, signature, DIGITS, ids.owner, served, watermark],
        );
      await version(versions.marked, '1.0.0', marked.sha256, report);
      await version(versions.optedOut, '2.0.0', null, { marked: false, optedOut: true });
      await version(versions.unmarked, '0.1.0', null, null);
      await q(
        `INSERT INTO watermark_calibrations (version_id, samples, inputs, mean, covariance) VALUES ($1, 3, 2, $2, $3)`,
        [versions.marked, floats(mean), floats(covariance)],
      );
      await q(`INSERT INTO licensee_copies (contract_id, version_id, sha256) VALUES ($1, $2, $3)`, [
        ids.contract,
        versions.marked,
        copy.sha256,
      ]);
    } finally {
      await pool.end();
    }
    // The server applies the pending migration at start, as a deployment does.
    server = await startTestServer({ DATABASE_URL: url });
  });

  after(async () => {
    await server?.close();
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
  });

  it('carries every row over to artifact_variants and drops the old slots', async () => {
    const { rows } = await server.sql.query(
      `SELECT v.version, a.kind, a.contract_id, a.params, a.sha256, a.served, a.report, a.calibration
       FROM artifact_variants a JOIN model_versions v ON v.id = a.version_id ORDER BY v.version, a.kind`,
    );
    assert.deepEqual(rows, [
      {
        version: '1.0.0',
        kind: 'OWNER_MARKED',
        contract_id: null,
        params: {
          key: 'owner',
          layout: { carriers: report.carriers, bits: report.bits, slack: report.slack },
          calibration: { samples: 3, inputs: 2 },
        },
        sha256: marked.sha256,
        served: true,
        report,
        calibration: Buffer.concat([floats(mean), floats(covariance)]),
      },
      {
        version: '1.0.0',
        kind: 'LICENSEE_COPY',
        contract_id: ids.contract,
        params: { key: 'licensee' },
        sha256: copy.sha256,
        served: false,
        report: {},
        calibration: null,
      },
      {
        version: '2.0.0',
        kind: 'OWNER_MARKED',
        contract_id: null,
        params: { key: 'owner' },
        sha256: null,
        served: false,
        report: { marked: false, optedOut: true },
        calibration: null,
      },
    ]);
    const gone = await server.sql.query(
      `SELECT to_regclass('licensee_copies') AS copies, to_regclass('watermark_calibrations') AS calibrations,
         (SELECT count(*)::int FROM information_schema.columns
          WHERE table_name = 'model_versions' AND column_name IN ('served_sha256', 'watermark')) AS columns`,
    );
    assert.deepEqual(gone.rows, [{ copies: null, calibrations: null, columns: 0 }]);
  });

  it('serves and reports what the old slots said: marked weights for the marked version, the upload otherwise', async () => {
    const owner = await logIn(server, email, password);
    const slug = (await server.sql.query('SELECT slug FROM models WHERE id = $1', [ids.model])).rows[0].slug;
    const res = await server.gql(
      `query($s: String!) { model(slug: $s) { versions { version watermark { marked tensor bits carriers agreement } } } }`,
      { s: slug },
      { token: owner.token },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    assert.deepEqual(res.data!.model.versions, [
      { version: '2.0.0', watermark: { marked: false, tensor: null, bits: null, carriers: null, agreement: null } },
      {
        version: '1.0.0',
        watermark: { marked: true, tensor: report.tensor, bits: 64, carriers: report.carriers, agreement: 1 },
      },
      { version: '0.1.0', watermark: { marked: false, tensor: null, bits: null, carriers: null, agreement: null } },
    ]);

    const rows = randomRows(2, 784, 5);
    const predicted = async (version: string) => {
      const answer = await server.gql(
        PREDICT,
        { input: { model: slug, version, inputs: rows } },
        { token: owner.token },
      );
      assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
      return answer.data!.predict.outputs.map((o: { values: number[] }) => o.values) as number[][];
    };
    const expectedMarked = expectedOutputs(markedModel, rows, [784]);
    const expectedUpload = expectedOutputs(uploadModel, rows, [784]);
    (await predicted('1.0.0')).forEach((values, i) => assertClose(values, expectedMarked[i]!));
    (await predicted('2.0.0')).forEach((values, i) => assertClose(values, expectedUpload[i]!));

    const download = async (versionId: string) => {
      const response = await fetch(`${server.origin}/v1/versions/${versionId}/model.weights.bin`, {
        headers: { authorization: `Bearer ${owner.token}` },
      });
      assert.equal(response.status, 200);
      return Buffer.from(await response.arrayBuffer());
    };
    assert.deepEqual(await download(versions.marked), marked.weights);
    assert.deepEqual(await download(versions.unmarked), upload.weights);
  });

  it('a served variant changed after its version notifies the catalog; a new licensee copy does not', async () => {
    const listener = await server.sql.connect();
    const heard: string[] = [];
    listener.on('notification', (message) => heard.push(message.payload!));
    try {
      await listener.query('LISTEN mm_changes');
      await server.sql.query(
        `INSERT INTO artifact_variants (version_id, kind, contract_id, sha256) VALUES ($1, 'LICENSEE_COPY', $2, $3)`,
        [versions.marked, randomUUID(), copy.sha256],
      );
      await server.sql.query(`UPDATE artifact_variants SET served = false WHERE version_id = $1 AND served`, [
        versions.marked,
      ]);
      // Notifications arrive in commit order: once the second is heard, the first would have been.
      const deadline = Date.now() + 5000;
      while (!heard.includes(`m:${ids.model}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(heard, [`m:${ids.model}`]);
    } finally {
      await listener.query('UNLISTEN mm_changes');
      listener.release();
    }
  });
});
