// `explain`: why a model version predicts what it does for 1–8 instances, by one of four methods, in the input's own
// form (image heat maps, token weights, feature weights). Resolved, authorized, encoded and metered like predict:
// every call by an authenticated caller writes one usage record of kind EXPLANATION; a licensee's call is billed
// per explained instance at the contract's pricePerExplanation and takes explanationQuotaUnits per instance from
// its quota (a flat weight the plan sets, whatever the method evaluates inside, so the buyer knows the cost
// beforehand). Perturbations run through the inference engine's batching like any predict call; the CPU work
// (Kernel SHAP's sampling and solve, heat-map PNGs) runs in the preprocessing worker threads.
import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { requireUserId, type Actor } from '../auth/principal.js';
import type { ModelVersion } from '../generated/prisma/client.js';
import { argmaxRows } from '../evaluation/metrics.js';
import {
  DEFAULT_ATTRIBUTION_STEPS,
  InferenceUnsupportedError,
  MAX_ATTRIBUTION_STEPS,
  type InferenceEngine,
  type TensorInput,
} from '../inference/engine.js';
import { ContractInactiveError, type MeteringService } from '../metering/metering-service.js';
import type { ArtifactService } from '../models/artifact-service.js';
import { canView } from '../models/model-policy.js';
import { isNamed, type SingleSignature } from '../models/signature.js';
import type { InputEncoder } from '../predictions/input-encoding.js';
import {
  assertStorableRefs,
  inferenceCallError,
  overloaded,
  recordFailedCall,
  type CallRecord,
  type PredictAuthorizer,
} from '../predictions/predict-service.js';
import { checkedWidth } from '../predictions/output-decoding.js';
import type { ServingCatalog } from '../predictions/serving-catalog.js';
import { PreprocessingOverloadedError, type PreprocessingPool } from '../preprocessing/preprocessing-pool.js';
import { BadUserInputError, ForbiddenError, NotFoundError, RateLimitedError } from '../server/errors.js';
import { checkRequestId } from '../server/text.js';
import type { AttributionCheck, ExplanationMethod, Explainer, InstanceAttribution } from './explainer.js';
import { featuresOf, layoutOf, type AttributionForm, type FeatureGroups, type InputLayout } from './features.js';
import { GradientExplainer, type AttributionSource } from './gradients.js';
import { KernelShapExplainer } from './kernel-shap.js';
import { OcclusionExplainer } from './occlusion.js';

export interface ExplainInput {
  model: string;
  version?: string | null;
  inputs: unknown;
  target?: string | null;
  method: ExplanationMethod;
  samples?: number | null;
  contractId?: string | null;
  requestId?: string | null;
}

export interface LabelScore {
  label: string;
  score: number;
}

export interface InstanceExplanation {
  predicted: LabelScore;
  target: LabelScore;
  form: AttributionForm;
  values: number[];
  shape: number[];
  heatmap: string | null;
  tokens: string[] | null;
  features: string[] | null;
  check: AttributionCheck | null;
}

export interface Explanation {
  id: string;
  requestId: string | null;
  modelVersion: ModelVersion;
  method: ExplanationMethod;
  baseline: string;
  evaluations: number;
  instances: InstanceExplanation[];
  latencyMs: number;
  contractId: string | null;
}

export interface ExplainResult {
  explanation: Explanation;
  warnings: string[];
}

interface StoredResult {
  explanation: Omit<Explanation, 'modelVersion'>;
  versionId: string;
  warnings: string[];
}

export const MAX_EXPLAINED_INSTANCES = 8;

/** Per method: the `samples` it takes (null: none) — its default and bounds. */
const SAMPLES: Record<ExplanationMethod, { default: number; min: number; max: number; name: string } | null> = {
  KERNEL_SHAP: { default: 256, min: 16, max: 2048, name: 'coalitions' },
  INTEGRATED_GRADIENTS: { default: DEFAULT_ATTRIBUTION_STEPS, min: 2, max: MAX_ATTRIBUTION_STEPS, name: 'steps' },
  GRADIENT_X_INPUT: null,
  OCCLUSION: null,
};

/**
 * Features one instance may have: Kernel SHAP's solve grows with their cube, occlusion's evaluations with their
 * number (images are grouped into at most ~64 patches, so only long texts and wide tensors reach these).
 */
const MAX_FEATURES: Record<'KERNEL_SHAP' | 'OCCLUSION', number> = { KERNEL_SHAP: 512, OCCLUSION: 4096 };

export interface ExplainLimits {
  /** explain calls one user runs at once (on this server); past it RATE_LIMITED. */
  maxConcurrentPerUser: number;
  /** Attribution values one call answers (instances × values per instance). */
  maxOutputValues: number;
}

/** Seconds a caller at its concurrency limit is told to wait: about one call's time. */
const CONCURRENCY_RETRY_AFTER_SECONDS = 1;

export class ExplainService {
  readonly #explainers: Record<ExplanationMethod, Explainer>;
  /** Calls running now, per caller. */
  readonly #running = new Map<string, number>();

  constructor(
    private readonly catalog: ServingCatalog,
    private readonly artifacts: ArtifactService,
    private readonly engine: InferenceEngine,
    private readonly authorizer: PredictAuthorizer,
    private readonly metering: MeteringService,
    private readonly encoder: InputEncoder,
    private readonly workers: PreprocessingPool,
    /** The engine's gradients (InferenceEngine.attributions). */
    gradients: AttributionSource,
    private readonly limits: ExplainLimits,
  ) {
    this.#explainers = {
      KERNEL_SHAP: new KernelShapExplainer(engine, workers),
      OCCLUSION: new OcclusionExplainer(engine),
      INTEGRATED_GRADIENTS: new GradientExplainer(gradients, 'INTEGRATED_GRADIENTS'),
      GRADIENT_X_INPUT: new GradientExplainer(gradients, 'GRADIENT_X_INPUT'),
    };
  }

  /** As predict: one usage record per call; a retry answered from its requestId writes none. */
  async explain(actor: Actor, input: ExplainInput): Promise<ExplainResult> {
    const started = performance.now();
    const callerId = requireUserId(actor.principal);
    const record: CallRecord = {
      predictionId: randomUUID(),
      consumerId: callerId,
      apiKeyId: actor.principal.kind === 'apiKey' ? actor.principal.apiKeyId : null,
      modelId: null,
      modelVersionId: null,
      contract: null,
      units: 0,
      requestId: null,
      kind: 'EXPLANATION',
    };
    let result: ExplainResult;
    try {
      assertStorableRefs({
        'input.model': input.model,
        'input.version': input.version,
        'input.contractId': input.contractId,
        'input.target': input.target,
      });
      const explainer = this.#explainer(input.method);
      const samples = checkedSamples(input.method, input.samples);
      if (!Array.isArray(input.inputs) || input.inputs.length < 1 || input.inputs.length > MAX_EXPLAINED_INSTANCES) {
        throw new BadUserInputError(
          `inputs must be a list of 1 to ${MAX_EXPLAINED_INSTANCES} instances`,
          'input.inputs',
        );
      }
      const requestId = input.requestId == null ? null : checkRequestId(input.requestId, 'input.requestId');
      record.requestId = requestId;
      // Owners too: their calls are free but take the same share of the workers.
      const release = this.#holdCallSlot(callerId);
      try {
        if (requestId !== null) {
          const claim = await this.metering.claim(callerId, requestId, inputHash(input), record.predictionId);
          if (claim.kind === 'replay') return await this.#replay(actor, input, claim.response as StoredResult);
        }
        result = await this.#run(actor, input, explainer, samples, record, started);
      } finally {
        release();
      }
    } catch (error) {
      await recordFailedCall(this.metering, record, error, started);
      throw error;
    }
    await this.metering.record({
      ...record,
      status: 'OK',
      latencyMs: result.explanation.latencyMs,
      idempotentResponse: record.requestId === null ? undefined : stored(result),
    });
    return result;
  }

  /** Counts one more running call of `callerId`, or refuses it (RATE_LIMITED); the result gives the slot back. */
  #holdCallSlot(callerId: string): () => void {
    const running = this.#running.get(callerId) ?? 0;
    const max = this.limits.maxConcurrentPerUser;
    if (running >= max) {
      throw new RateLimitedError(
        `At most ${max} explain call${max === 1 ? '' : 's'} of one account run at once`,
        CONCURRENCY_RETRY_AFTER_SECONDS,
      );
    }
    this.#running.set(callerId, running + 1);
    return () => {
      const left = this.#running.get(callerId)! - 1;
      if (left === 0) this.#running.delete(callerId);
      else this.#running.set(callerId, left);
    };
  }

  #explainer(method: ExplanationMethod): Explainer {
    const explainer = this.#explainers[method];
    if (explainer === undefined) throw new BadUserInputError(`Unknown method ${String(method)}`, 'input.method');
    return explainer;
  }

  async #run(
    actor: Actor,
    input: ExplainInput,
    explainer: Explainer,
    samples: number | null,
    record: CallRecord,
    started: number,
  ): Promise<ExplainResult> {
    // Explained as predicted: a licensee naming no version (or its contract's alias) gets its pinned version.
    const target = await this.catalog.servedFor(actor, input, 'EXPLAIN', (model) => (record.modelId = model.id));
    const { served } = target;
    const { version, signature, sha256 } = served;
    record.modelVersionId = version.id;
    if (version.status === 'ARCHIVED') {
      throw new ForbiddenError(`Version ${version.version} is archived and no longer serves`, {
        reason: 'VERSION_ARCHIVED',
      });
    }
    if (isNamed(signature) || signature.output.kind !== 'classification') {
      throw new BadUserInputError(
        'Explanations cover models of one input and a classification output; this version has another signature',
        'input.model',
      );
    }
    const layout = layoutOf(signature);
    // The answer holds one value per input value of each instance: refused before anything is decoded or run.
    const answerValues = (input.inputs as unknown[]).length * layout.size;
    if (answerValues > this.limits.maxOutputValues) {
      const fit = Math.floor(this.limits.maxOutputValues / layout.size);
      throw new BadUserInputError(
        fit === 0
          ? `this model's instances have ${layout.size} values; an explanation answers one per value, and at most ${this.limits.maxOutputValues} fit in one call`
          : `this model's instances have ${layout.size} values; an explanation answers one per value, so at most ${fit} instances fit in one call's ${this.limits.maxOutputValues}`,
        'input.inputs',
      );
    }
    const labels = signature.output.labels;
    const targetIndex = input.target == null ? null : labels.indexOf(input.target);
    if (targetIndex === -1)
      throw new BadUserInputError(`target "${input.target}" is not one of the model's labels`, 'input.target');
    let grant = await this.authorizer.authorize(actor, target.model, version, target.contractId, { use: 'EXPLAIN' });
    record.contract = grant.contract;
    const warnings =
      version.status === 'DEPRECATED'
        ? [`Version ${version.version} of ${input.model} is deprecated; move to a newer version`]
        : [];
    const encoded = await this.encoder
      .encode(signature, input.inputs, undefined, undefined, warnings)
      .catch(refuseIfOverloaded('Image decoding is overloaded'));
    const instances = encoded.shape[0]!;
    const tokens = await this.#tokens(signature, input.inputs as unknown[], layout).catch(
      refuseIfOverloaded('Tokenising is overloaded'),
    );
    const features = Array.from({ length: instances }, (_, i) => featuresOf(layout, encoded, i, tokens[i]));
    checkFeatureCounts(input.method, features);
    record.units = instances;
    if (grant.contract) {
      const units = instances * grant.quotaUnitsPerInstance;
      try {
        await this.metering.reserve(grant.contract, units, record.predictionId);
      } catch (error) {
        if (!(error instanceof ContractInactiveError)) throw error;
        grant = await this.authorizer.authorize(actor, target.model, version, input.contractId, {
          fresh: true,
          use: 'EXPLAIN',
        });
        record.contract = grant.contract;
        if (grant.contract) {
          await this.metering.reserve(grant.contract, instances * grant.quotaUnitsPerInstance, record.predictionId);
        }
      }
    }
    const model = this.artifacts.modelRef(sha256);
    const classes = labels.length;
    let attributions: { instances: InstanceAttribution[]; evaluations: number };
    let outputs: Float32Array;
    try {
      const output = await this.engine.predict(model, encoded);
      checkedWidth(output, classes);
      outputs = output.data;
      const predicted = argmaxRows(outputs, classes);
      const targets = predicted.map((best) => targetIndex ?? best);
      attributions = await explainer.explain({
        model,
        input: encoded,
        layout,
        features,
        outputs,
        classes,
        targets,
        samples,
      });
      const rendered = await Promise.all(
        attributions.instances.map((attribution, i) =>
          this.#render(signature, layout, encoded, i, features[i]!, attribution, outputs, labels, {
            predicted: predicted[i]!,
            target: targets[i]!,
          }),
        ),
      );
      return {
        explanation: {
          id: record.predictionId,
          requestId: input.requestId ?? null,
          modelVersion: version,
          method: input.method,
          baseline: baselineOf(input.method, layout),
          evaluations: attributions.evaluations + instances,
          instances: rendered,
          latencyMs: Math.round((performance.now() - started) * 1000) / 1000,
          contractId: grant.contract?.id ?? null,
        },
        warnings,
      };
    } catch (error) {
      if (error instanceof PreprocessingOverloadedError) throw overloaded('The explanation workers are overloaded');
      // Gradients exist for layers models of one float input (or token ids into an Embedding) only.
      if (error instanceof InferenceUnsupportedError) {
        throw new BadUserInputError(
          `${input.method} cannot run on this model (${error.message}); use KERNEL_SHAP or OCCLUSION`,
          'input.method',
          { reason: 'METHOD_UNSUPPORTED' },
        );
      }
      throw inferenceCallError(error);
    }
  }

  /** Text instances' tokens as the preprocessing read them (instances sent as ids: null, named from the ids). */
  async #tokens(
    signature: SingleSignature,
    instances: unknown[],
    layout: InputLayout,
  ): Promise<(string[] | undefined)[]> {
    const { preprocessing } = signature.input;
    if (layout.form !== 'TEXT' || preprocessing.kind !== 'text') return instances.map(() => undefined);
    const texts = instances.map((instance) => (typeof instance === 'string' ? instance : ''));
    const leading = await this.workers.leadingTokens(texts, preprocessing.lowercase, preprocessing.maxLength);
    return instances.map((instance, i) => {
      if (typeof instance === 'string') return leading[i];
      // Ids: the vocabulary's token for each (the original word of an <unk> is not known).
      return (instance as number[]).map((id) => preprocessing.vocabulary[id] ?? `#${id}`);
    });
  }

  async #render(
    signature: SingleSignature,
    layout: InputLayout,
    input: TensorInput,
    index: number,
    features: FeatureGroups,
    attribution: InstanceAttribution,
    outputs: Float32Array,
    labels: string[],
    { predicted, target }: { predicted: number; target: number },
  ): Promise<InstanceExplanation> {
    const classes = labels.length;
    const common = {
      predicted: { label: labels[predicted]!, score: outputs[index * classes + predicted]! },
      target: { label: labels[target]!, score: outputs[index * classes + target]! },
      form: layout.form,
      check: attribution.check,
    };
    const { values } = attribution;
    if (layout.form === 'TEXT') {
      // One weight per token: the positions that are not padding, in order.
      const weights = features.groups.map((group) => values[group[0]!]!);
      return {
        ...common,
        values: weights,
        shape: [weights.length],
        heatmap: null,
        tokens: features.names,
        features: null,
      };
    }
    if (layout.image) {
      const { height, width, channels, scaling } = layout.image;
      const heat = new Float32Array(height * width);
      for (let p = 0; p < height * width; p++) {
        for (let c = 0; c < channels; c++) heat[p]! += values[p * channels + c]!;
      }
      const pixels = Float32Array.from(input.data.subarray(index * layout.size, (index + 1) * layout.size));
      const heatmap = await this.workers.renderHeatmap({ pixels, heat, height, width, channels, scaling });
      return {
        ...common,
        values: Array.from(values),
        shape: [height, width, channels],
        heatmap,
        tokens: null,
        features: null,
      };
    }
    return {
      ...common,
      values: Array.from(values),
      shape: signature.input.shape,
      heatmap: null,
      tokens: null,
      features: features.names,
    };
  }

  /** The stored answer, to a caller who may still see the model. */
  async #replay(actor: Actor, input: ExplainInput, result: StoredResult): Promise<ExplainResult> {
    const target = await this.catalog.resolve(input.model, input.version ?? 'latest');
    if (!target || !canView(actor.principal, target.model)) throw new NotFoundError('Model');
    const modelVersion = await this.catalog.versionById(result.versionId);
    return { explanation: { ...result.explanation, modelVersion }, warnings: result.warnings };
  }
}

/** Rethrows a full preprocessing queue as OVERLOADED (retry shortly), anything else as it is. */
function refuseIfOverloaded(what: string): (error: unknown) => never {
  return (error) => {
    throw error instanceof PreprocessingOverloadedError ? overloaded(what) : error;
  };
}

function checkedSamples(method: ExplanationMethod, samples: number | null | undefined): number | null {
  const rule = SAMPLES[method];
  if (rule === undefined) throw new BadUserInputError(`Unknown method ${String(method)}`, 'input.method');
  if (rule === null) {
    if (samples != null) throw new BadUserInputError(`${method} takes no samples`, 'input.samples');
    return null;
  }
  if (samples == null) return rule.default;
  if (!Number.isInteger(samples) || samples < rule.min || samples > rule.max) {
    throw new BadUserInputError(`samples (${method} ${rule.name}) must be ${rule.min} to ${rule.max}`, 'input.samples');
  }
  return samples;
}

/** The explanation's stated baseline; perturbation methods also say what one of their features is. */
function baselineOf(method: ExplanationMethod, layout: InputLayout): string {
  const perturbs = method === 'KERNEL_SHAP' || method === 'OCCLUSION';
  return perturbs && layout.featureUnit ? `${layout.baseline}; features are ${layout.featureUnit}` : layout.baseline;
}

function checkFeatureCounts(method: ExplanationMethod, features: FeatureGroups[]): void {
  if (method !== 'KERNEL_SHAP' && method !== 'OCCLUSION') return;
  const max = MAX_FEATURES[method];
  const index = features.findIndex((f) => f.groups.length > max);
  if (index !== -1) {
    throw new BadUserInputError(
      `instance ${index} has ${features[index]!.groups.length} features; ${method} explains at most ${max}`,
      `input.inputs[${index}]`,
    );
  }
}

function inputHash(input: ExplainInput): string {
  const { model, version, inputs, target, method, samples, contractId } = input;
  const call = [
    'explain',
    model,
    version ?? 'latest',
    target ?? null,
    method,
    samples ?? null,
    contractId ?? null,
    inputs,
  ];
  let json;
  try {
    json = JSON.stringify(call);
  } catch (error) {
    if (error instanceof RangeError) throw new BadUserInputError('input.inputs: nested too deeply', 'input.inputs');
    throw error;
  }
  return createHash('sha256').update(json).digest('hex');
}

function stored({ explanation, warnings }: ExplainResult): StoredResult {
  const { modelVersion, ...rest } = explanation;
  return { explanation: rest, versionId: modelVersion.id, warnings };
}
