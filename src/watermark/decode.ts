// Decoding: non-blind. The suspect's marked tensor is aligned to the original (unit permutation and
// scaling undone), the original is subtracted, and each key's bits are read as the signs of the carrier
// projections of that difference. Weights the suspect has set to exactly zero where the original was not
// (pruning) are left out: for them the difference says nothing about the mark, only about the original.
import { alignUnits, applyUnitMap, type AlignmentReport, type UnitMap } from './alignment.js';
import { findTensor, readTensor, tensorEntries, type TensorEntry, type WeightsArtifact } from './artifact.js';
import { carrierFor } from './carrier.js';
import { WatermarkError } from './errors.js';
import type { MarkKey } from './keys.js';
import { bitErrors, defaultLayout, scaledDifference, standardDeviation, type MarkLayout } from './mark.js';
import { binomialTail, type MarkEvidence } from './statistics.js';
import { markableTensors, selectMarkTensor, type MarkTarget } from './topology.js';

export interface DecodeResult extends MarkEvidence {
  /** Name of the tensor selectMarkTensor picks. */
  tensor: string;
  /** The tensors decoded (the mark's carriers). */
  carriers: string[];
  /** Weights left out because the suspect zeroed them. */
  erasedWeights: number;
  /** How the suspect's units were put back in place (summed over the carriers); null when none has a hidden-unit axis. */
  alignment: AlignmentReport | null;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

/** The suspect's copy of a carrier tensor: same name, else the tensor at the same rank among equally shaped ones. */
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

function mergeAlignment(a: AlignmentReport | null, b: AlignmentReport | null): AlignmentReport | null {
  if (!a || !b) return a ?? b;
  return {
    unitsMoved: a.unitsMoved + b.unitsMoved,
    minScale: Math.min(a.minScale, b.minScale),
    maxScale: Math.max(a.maxScale, b.maxScale),
  };
}

/**
 * Decodes several keys from one suspect; the alignment is computed once. `layout` is the one the marks were
 * made with (the default for versions marked before capacities existed).
 */
export function decodeMarks(
  suspect: WeightsArtifact,
  original: WeightsArtifact,
  keys: readonly MarkKey[],
  layout: MarkLayout = defaultLayout(original.modelJson),
): DecodeResult[] {
  const main = selectMarkTensor(original.modelJson);
  const markable = new Map(markableTensors(original.modelJson).map((target) => [target.name, target]));
  const originalEntries = tensorEntries(original);
  const suspectEntries = tensorEntries(suspect);
  const originalOf = (target: MarkTarget) => readTensor(original, findTensor(originalEntries, target.name));
  // Memoised: a tensor between two hidden layers needs the previous tensor aligned first.
  const alignedTensors = new Map<string, { values: Float32Array; map: UnitMap | null }>();
  let alignment: AlignmentReport | null = null;
  const alignedTensor = (target: MarkTarget): { values: Float32Array; map: UnitMap | null } => {
    const done = alignedTensors.get(target.name);
    if (done) return done;
    let values = readTensor(suspect, locateInSuspect(suspectEntries, originalEntries, target));
    const ownAxis = target.unitAxis ?? target.outputAxis;
    if (target.inputAxis) {
      // The previous layer's units enter scaled by 1/s when that layer's outputs were scaled by s.
      const previous = alignedTensor(markable.get(target.previous!)!);
      values = applyUnitMap(values, target.inputAxis, previous.map!, 1);
    }
    let result: { values: Float32Array; map: UnitMap | null } = { values, map: null };
    if (ownAxis) {
      const aligned = alignUnits(values, originalOf(target), ownAxis);
      alignment = mergeAlignment(alignment, aligned.report);
      result = { values: aligned.aligned, map: aligned.map };
    }
    alignedTensors.set(target.name, result);
    return result;
  };
  let erasedWeights = 0;
  const parts = layout.carriers.map((name) => {
    const target = markable.get(name);
    if (!target) throw new WatermarkError(`${name} cannot carry a mark in this model`);
    const originalValues = originalOf(target);
    // An erased weight decodes as no change.
    const kept = Float32Array.from(alignedTensor(target).values, (value, i) => {
      if (value !== 0 || originalValues[i] === 0) return value;
      erasedWeights++;
      return originalValues[i]!;
    });
    return { a: kept, b: originalValues, sigma: standardDeviation(originalValues) };
  });
  const difference = scaledDifference(parts);
  return keys.map((key) => {
    const matchedBits = layout.bits - bitErrors(carrierFor(key, difference.length), key, difference, layout.bits);
    return {
      purpose: key.purpose,
      id: key.id,
      matchedBits,
      totalBits: layout.bits,
      pValue: binomialTail(matchedBits, layout.bits),
      tensor: main.name,
      carriers: layout.carriers,
      erasedWeights,
      alignment,
    };
  });
}

/** Decodes one key's mark from a suspect artifact, given the unmarked original it was published from. */
export function decodeMark(
  suspect: WeightsArtifact,
  original: WeightsArtifact,
  key: MarkKey,
  layout?: MarkLayout,
): DecodeResult {
  return decodeMarks(suspect, original, [key], layout)[0]!;
}
