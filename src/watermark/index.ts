// White-box weight watermarking for tfjs artifacts; see README.md for the method and its measured limits.
export type { AlignmentReport } from './alignment.js';
export type { WeightsArtifact } from './artifact.js';
export {
  capacityThreshold,
  chooseCarriers,
  fitCapacity,
  KEY_BUDGET,
  MIN_CAPACITY,
  minimumCapacity,
  slackFromSensitivity,
  SPREAD_TOLERANCE,
  type CapacityTrial,
} from './capacity.js';
export { decodeMark, decodeMarks, type DecodeResult } from './decode.js';
export { WatermarkError } from './errors.js';
export { deriveMarkKey, MARK_BITS, type MarkKey, type MarkPurpose } from './keys.js';
export {
  DEFAULT_MARGIN,
  defaultLayout,
  embedMark,
  markArtifact,
  type MarkLayout,
  type MarkOptions,
  type MarkReport,
} from './mark.js';
export {
  binomialTail,
  binomialTailLog,
  decide,
  DEFAULT_FALSE_POSITIVE_RATE,
  matchThreshold,
  type MarkEvidence,
  type Verdict,
  type VerdictFields,
  type VerdictKind,
} from './statistics.js';
export {
  inputStatistics,
  MAX_SHAPED_INPUTS,
  SHAPED_MARGIN,
  SHAPING_REGULARIZATION,
  type InputStatistics,
} from './shaping.js';
export { markableTensors, MIN_MARK_WEIGHTS, selectMarkTensor, type MarkTarget, type UnitAxis } from './topology.js';
