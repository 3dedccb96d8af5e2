// What the client and CLI tests share: a TensorFlow.js model saved as a directory of files (as
// tensorflowjs_converter writes one), and expired access tokens signed with the test server's own key.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import jwt from 'jsonwebtoken';
import { toArtifact } from '../inference/models.js';

/** Writes `model` into a new temporary directory, its weights split into `shards` files; returns the directory. */
export async function saveModelDir(model: tf.LayersModel, shards = 1): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-model-'));
  const { modelJson, weights } = await toArtifact(model, shards);
  const paths = (modelJson as { weightsManifest: { paths: string[] }[] }).weightsManifest[0]!.paths;
  const size = Math.ceil(weights.byteLength / paths.length);
  await writeFile(path.join(dir, 'model.json'), JSON.stringify(modelJson));
  for (const [index, name] of paths.entries()) {
    await writeFile(path.join(dir, name), weights.subarray(index * size, (index + 1) * size));
  }
  return dir;
}

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

/** Server settings that make it sign access tokens with a key these tests know. */
export const signingKeyEnv = { JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };

/** An access token for the same session as `token`, signed with the server's own key, that expired a minute ago. */
export function expiredCopy(token: string): string {
  const { header, payload } = jwt.decode(token, { complete: true }) as {
    header: jwt.JwtHeader;
    payload: jwt.JwtPayload;
  };
  const now = Math.floor(Date.now() / 1000);
  return jwt.sign({ ...payload, iat: now - 3600, exp: now - 60, jti: randomUUID() }, privateKey, {
    algorithm: 'ES256',
    keyid: header.kid!,
  });
}
