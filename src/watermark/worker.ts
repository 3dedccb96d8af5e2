// Watermark computations in a worker thread, so marking a large tensor (up to ~0.7 s) or decoding many keys
// never blocks the server's event loop. Loaded by piscina (see watermark-service.ts); no top-level await.
import {
  decodeMarks,
  inputStatistics,
  markableTensors,
  markArtifact,
  WatermarkError,
  type InputStatistics,
  type MarkKey,
  type MarkLayout,
  type WeightsArtifact,
} from './index.js';

export type WatermarkTask =
  | {
      kind: 'mark';
      artifact: WeightsArtifact;
      key: MarkKey;
      reference?: WeightsArtifact;
      preserve?: MarkKey[];
      shaping?: InputStatistics;
      layout?: MarkLayout;
    }
  | { kind: 'decode'; suspect: WeightsArtifact; original: WeightsArtifact; keys: MarkKey[]; layout?: MarkLayout }
  | { kind: 'statistics'; features: Float32Array; samples: number }
  | { kind: 'markable'; artifact: WeightsArtifact };

/** Structured cloning turns Buffers into plain Uint8Arrays; the key derivation's users expect Buffers. */
function revive(key: MarkKey): MarkKey {
  return { ...key, carrierKey: Buffer.from(key.carrierKey) };
}

/** A model the mark cannot be applied to or read from; error classes do not survive the thread boundary. */
export interface WatermarkRefusal {
  refused: string;
}

export default function run(task: WatermarkTask) {
  try {
    if (task.kind === 'statistics') return inputStatistics(task.features, task.samples);
    // Reads every candidate tensor to leave out constant ones: tens of ms on a large model.
    if (task.kind === 'markable') return markableTensors(task.artifact.modelJson, task.artifact.weights);
    if (task.kind === 'mark') {
      return markArtifact(task.artifact, revive(task.key), {
        reference: task.reference,
        preserve: task.preserve?.map(revive),
        shaping: task.shaping,
        layout: task.layout,
      });
    }
    return decodeMarks(task.suspect, task.original, task.keys.map(revive), task.layout);
  } catch (error) {
    if (error instanceof WatermarkError) return { refused: error.message } satisfies WatermarkRefusal;
    throw error;
  }
}
