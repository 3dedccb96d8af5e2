// Decoding: non-blind. The suspect's marked tensor is aligned to the original (unit permutation and
// scaling undone), the original is subtracted, and each key's bits are read as the signs of the carrier
// projections of that difference. Weights the suspect has set to exactly zero where the original was not
// (pruning) are left out: for them the difference says nothing about the mark, only about the original.
import { alignUnits, type AlignmentReport } from './alignment.js';
import { findTensor, readTensor, tensorEntries, type TensorEntry, type WeightsArtifact } from './artifact.js';
import { carrierFor } from './carrier.js';
import { WatermarkError } from './errors.js';
import { MARK_BITS, type MarkKey } from './keys.js';
import { bitErrors } from './mark.js';
import { binomialTail, type MarkEvidence } from './statistics.js';
import { selectMarkTensor, type MarkTarget } from './topology.js';

export interface DecodeResult extends MarkEvidence {
  /** Name of the decoded weight tensor. */
  tensor: string;
  /** Weights left out because the suspect zeroed them. */
  erasedWeights: number;
  /** How the suspect's units were put back in place; null when the tensor has no hidden-unit axis. */
  alignment: AlignmentReport | null;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

/** The suspect's copy of the marked tensor: same name, else the tensor at the same rank among equally shaped ones. */
function locateInSuspect(
  suspect: readonly TensorEntry[],
  original: readonly TensorEntry[],
  target: MarkTarget,
): TensorEntry {
  const named = suspect.find((entry) => entry.spec.name === target.name);
  if (named && sameShape(named.spec.shape, target.shape)) return named;
  const rank = original
    .filter((e) => sameShape(e.spec.shape, target.shape))
    .findIndex((e) => e.spec.name === target.name);
  const byShape = suspect.filter((e) => sameShape(e.spec.shape, target.shape))[rank];
  if (!byShape) throw new WatermarkError(`the suspect has no ${target.shape.join('×')} weight like ${target.name}`);
  return byShape;
}

/** Decodes several keys from one suspect; the alignment is computed once. */
export function decodeMarks(
  suspect: WeightsArtifact,
  original: WeightsArtifact,
  keys: readonly MarkKey[],
): DecodeResult[] {
  const target = selectMarkTensor(original.modelJson);
  const originalEntries = tensorEntries(original);
  const originalValues = readTensor(original, findTensor(originalEntries, target.name));
  const suspectValues = readTensor(suspect, locateInSuspect(tensorEntries(suspect), originalEntries, target));
  const { aligned, report: alignment } = target.unitAxis
    ? alignUnits(suspectValues, originalValues, target.unitAxis)
    : { aligned: suspectValues, report: null };
  let erasedWeights = 0;
  const difference = new Float64Array(target.size);
  for (let i = 0; i < target.size; i++) {
    if (aligned[i] === 0 && originalValues[i] !== 0) erasedWeights++;
    else difference[i] = aligned[i]! - originalValues[i]!;
  }
  return keys.map((key) => {
    const matchedBits = MARK_BITS - bitErrors(carrierFor(key, target.size), key, difference);
    return {
      purpose: key.purpose,
      id: key.id,
      matchedBits,
      totalBits: MARK_BITS,
      pValue: binomialTail(matchedBits, MARK_BITS),
      tensor: target.name,
      erasedWeights,
      alignment,
    };
  });
}

/** Decodes one key's mark from a suspect artifact, given the unmarked original it was published from. */
export function decodeMark(suspect: WeightsArtifact, original: WeightsArtifact, key: MarkKey): DecodeResult {
  return decodeMarks(suspect, original, [key])[0]!;
}
