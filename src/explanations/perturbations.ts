// Runs an instance with some of its features removed, many times, through InferenceEngine.predict: each chunk of
// perturbed copies is one predict call, so they are micro-batched and share the workers with every predict call.
// Copies are built a chunk at a time (bounded event-loop slices and memory, whatever the input's size).
import type { ModelRef, TensorInput } from '../inference/engine.js';
import { ModelError } from '../server/errors.js';
import type { Predictor } from './explainer.js';

/** Values copied per chunk: a slice of well under a millisecond of the event loop. */
const CHUNK_VALUES = 1 << 18;
const MAX_CHUNK_INSTANCES = 64;
/**
 * Chunks in flight at once for one call (its instances run in turn, see `inTurn`): one running while the next is
 * built and queued keeps a worker busy, and one call never holds more than 2 × 64 instances of the shared queue.
 */
const CHUNKS_IN_FLIGHT = 2;

export interface Perturbations {
  /** Features present in each perturbed copy: `count` rows of `features` flags (1 = kept, 0 = removed). */
  masks: Uint8Array;
  count: number;
}

/**
 * The model's output for class `target` on each perturbed copy of instance `index` of `input`, where a removed
 * feature's values are 0 (the baseline: black pixels, padding, the standardised mean).
 */
export async function evaluatePerturbations(
  engine: Predictor,
  model: ModelRef,
  input: TensorInput,
  index: number,
  groups: Int32Array[],
  perturbations: Perturbations,
  classes: number,
  target: number,
): Promise<Float64Array> {
  const size = input.data.length / input.shape[0]!;
  const row = input.data.subarray(index * size, (index + 1) * size);
  const features = groups.length;
  const { masks, count } = perturbations;
  const perChunk = Math.max(1, Math.min(MAX_CHUNK_INSTANCES, Math.floor(CHUNK_VALUES / size)));
  const scores = new Float64Array(count);
  let next = 0;
  const runChunks = async () => {
    while (next < count) {
      const start = next;
      const end = Math.min(count, start + perChunk);
      next = end;
      const data =
        input.dtype === 'int32' ? new Int32Array((end - start) * size) : new Float32Array((end - start) * size);
      for (let k = start; k < end; k++) {
        const copy = data.subarray((k - start) * size, (k - start + 1) * size);
        copy.set(row);
        for (let j = 0; j < features; j++) {
          if (masks[k * features + j] === 0) for (const offset of groups[j]!) copy[offset] = 0;
        }
      }
      const output = await engine.predict(model, {
        data,
        shape: [end - start, ...input.shape.slice(1)],
        dtype: input.dtype,
      });
      if (output.data.length !== (end - start) * classes) {
        throw new ModelError(
          'The model returned another number of outputs than its signature declares; the call was not billed',
        );
      }
      for (let k = start; k < end; k++) {
        const score = output.data[(k - start) * classes + target]!;
        if (!Number.isFinite(score)) {
          throw new ModelError(
            `The model produced a non-finite value (${score}) on a perturbed input; the call was not billed`,
          );
        }
        scores[k] = score;
      }
    }
  };
  await Promise.all(Array.from({ length: CHUNKS_IN_FLIGHT }, runChunks));
  return scores;
}

/** `explain` for each item, one after the other (a call's instances, so its chunks in flight stay bounded). */
export async function inTurn<T, R>(items: T[], explain: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (const [index, item] of items.entries()) results.push(await explain(item, index));
  return results;
}
