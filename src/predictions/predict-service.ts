// `predict`: resolve the version, authorize, validate and encode the inputs, run them through the inference
// engine (micro-batched, off the event loop), decode the outputs.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GraphQLError } from 'graphql';
import type { Actor } from '../auth/principal.js';
import type { Model, ModelVersion } from '../generated/prisma/client.js';
import { InferenceInputError, InferenceOverloadedError, type InferenceEngine } from '../inference/engine.js';
import type { ArtifactService } from '../models/artifact-service.js';
import { canManage, canView } from '../models/model-policy.js';
import { BadUserInputError, ErrorCode, ForbiddenError, NotFoundError } from '../server/errors.js';
import { encodeInputs, type InputLimits } from './input-encoding.js';
import { decodeOutputs, type PredictionOutput } from './output-decoding.js';
import type { ServingCatalog } from './serving-catalog.js';

export interface PredictInput {
  model: string;
  version?: string | null;
  inputs: unknown;
  topK?: number | null;
  requestId?: string | null;
}

export interface Prediction {
  id: string;
  requestId: string | null;
  modelVersion: ModelVersion;
  outputs: PredictionOutput[];
  latencyMs: number;
}

export interface PredictResult {
  prediction: Prediction;
  /** Things the caller should know, e.g. that the version is deprecated. */
  warnings: string[];
}

/**
 * Decides whether a caller may run a version. The licensing domain plugs in here; until then only the
 * model's owner and admins may call a model.
 */
export interface PredictAuthorizer {
  authorize(actor: Actor, model: Model, version: ModelVersion): Promise<void>;
}

export const ownerOnlyAuthorizer: PredictAuthorizer = {
  async authorize(actor, model) {
    if (!canManage(actor.principal, model)) {
      throw new ForbiddenError('You have no licence for this model', { reason: 'NO_CONTRACT' });
    }
  },
};

const MAX_REQUEST_ID = 255;
const MAX_TOP_K = 100;

export class PredictService {
  constructor(
    private readonly catalog: ServingCatalog,
    private readonly artifacts: ArtifactService,
    private readonly engine: InferenceEngine,
    private readonly authorizer: PredictAuthorizer,
    private readonly limits: InputLimits,
  ) {}

  async predict(actor: Actor, input: PredictInput): Promise<PredictResult> {
    const started = performance.now();
    const requestId = input.requestId ?? null;
    if (requestId !== null && (requestId.length === 0 || requestId.length > MAX_REQUEST_ID)) {
      throw new BadUserInputError(`requestId must be 1 to ${MAX_REQUEST_ID} characters`, 'input.requestId');
    }
    const topK = input.topK ?? 3;
    if (!Number.isInteger(topK) || topK < 1 || topK > MAX_TOP_K) {
      throw new BadUserInputError(`topK must be 1 to ${MAX_TOP_K}`, 'input.topK');
    }
    const versionRef = input.version ?? 'latest';
    const target = await this.catalog.resolve(input.model, versionRef);
    if (!target || !canView(actor.principal, target.model)) throw new NotFoundError('Model');
    const { served } = target;
    if (!served) throw new NotFoundError(`Version "${versionRef}" of ${input.model}`);
    const { version, signature, sha256 } = served;
    if (version.status === 'ARCHIVED') {
      throw new ForbiddenError(`Version ${version.version} is archived and no longer serves`, {
        reason: 'VERSION_ARCHIVED',
      });
    }
    await this.authorizer.authorize(actor, target.model, version);

    const tensor = encodeInputs(signature, input.inputs, this.limits);
    let output;
    try {
      output = await this.engine.predict(this.artifacts.modelRef(sha256), tensor);
    } catch (error) {
      if (error instanceof InferenceOverloadedError) {
        throw new GraphQLError('The model is overloaded; retry shortly', {
          extensions: { code: ErrorCode.OVERLOADED, retryAfter: 1, http: { status: 503 } },
        });
      }
      if (error instanceof InferenceInputError) throw new BadUserInputError(error.message, 'input.inputs');
      throw error;
    }
    const warnings =
      version.status === 'DEPRECATED'
        ? [`Version ${version.version} of ${input.model} is deprecated; move to a newer version`]
        : [];
    return {
      prediction: {
        id: randomUUID(),
        requestId,
        modelVersion: version,
        outputs: decodeOutputs(signature, output, topK),
        latencyMs: Math.round((performance.now() - started) * 1000) / 1000,
      },
      warnings,
    };
  }
}
