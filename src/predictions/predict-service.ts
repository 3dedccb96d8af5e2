// `predict`: resolve the version, authorize, validate and encode the inputs, run them through the inference
// engine (micro-batched, off the event loop), decode the outputs.
import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GraphQLError } from 'graphql';
import { requireUserId, type Actor } from '../auth/principal.js';
import type { LicensedUse, PredictGrant } from '../licensing/predict-authorizer.js';
import {
  ContractInactiveError,
  type BillableContract,
  type MeteringService,
  type UsageRecordInput,
} from '../metering/metering-service.js';
import type { Model, ModelVersion } from '../generated/prisma/client.js';
import {
  InferenceArtifactError,
  InferenceInputError,
  InferenceOverloadedError,
  InferenceRuntimeError,
  type InferenceEngine,
  type TensorInput,
} from '../inference/engine.js';
import type { ArtifactService } from '../models/artifact-service.js';
import { canView } from '../models/model-policy.js';
import { inputSpecs, isNamed, type Signature } from '../models/signature.js';
import { BadUserInputError, ErrorCode, ForbiddenError, ModelError, NotFoundError } from '../server/errors.js';
import { assertStorableText, checkRequestId } from '../server/text.js';
import type { InputEncoder, InputRoot } from './input-encoding.js';
import { decodeNamedOutputs, decodeOutputs, type PredictionOutput } from './output-decoding.js';
import type { ServedVersion, ServingCatalog } from './serving-catalog.js';
import { PreprocessingOverloadedError } from '../preprocessing/preprocessing-pool.js';

export interface PredictInput {
  model: string;
  version?: string | null;
  /** The instances as JSON, or image files' bytes (predictImageFile). */
  inputs: unknown;
  /**
   * Reads `inputs` against the version's signature into predict's instances, for a caller whose request has
   * another form (the Open Inference Protocol's tensors): its refusals are the call's, recorded as any other.
   * `root` names the instances in errors in the request's own terms (default `input.inputs`).
   */
  readInputs?: (signature: Signature, inputs: unknown) => { instances: unknown; root?: InputRoot };
  topK?: number | null;
  requestId?: string | null;
  contractId?: string | null;
}

export interface Prediction {
  id: string;
  requestId: string | null;
  modelVersion: ModelVersion;
  outputs: PredictionOutput[];
  latencyMs: number;
  contractId: string | null;
}

/** predict's arguments for one image file sent as it is (the REST image route): all but the inputs. */
export type ImageFileInput = Pick<PredictInput, 'model' | 'version' | 'topK' | 'contractId' | 'requestId'>;

export interface PredictResult {
  prediction: Prediction;
  /** Things the caller should know, e.g. that the version is deprecated. */
  warnings: string[];
}

/** Decides whether a caller may run a version, and which contract pays (licensing domain). */
export interface PredictAuthorizer {
  authorize(
    actor: Actor,
    model: Model,
    version: ModelVersion,
    contractId: string | null | undefined,
    options?: { fresh?: boolean; use?: LicensedUse },
  ): Promise<PredictGrant>;
}

/** The call's usage record, filled in as the call gets to know it. */
export type CallRecord = Omit<UsageRecordInput, 'status' | 'latencyMs' | 'idempotentResponse'>;

/** A call ready to run: its version resolved and authorised (its contract in the record), its inputs encoded. */
export interface PreparedCall {
  model: Model;
  served: ServedVersion;
  grant: PredictGrant;
  encoded: TensorInput | TensorInput[];
  topK: number;
  warnings: string[];
}

/** Takes a call's units from its contract's quota (its lease), or refuses; ContractInactiveError to choose again. */
export type Reserve = (contract: BillableContract, units: number, predictionId: string) => Promise<void>;

/** What an idempotency key stores: enough to answer a retry exactly as the first call was answered. */
interface StoredResult {
  prediction: Omit<Prediction, 'modelVersion'>;
  versionId: string;
  warnings: string[];
}

const MAX_TOP_K = 100;

/** Refuses references PostgreSQL cannot store (a NUL sent as %00 in a URL) before any query; keys name the fields. */
export function assertStorableRefs(refs: Record<string, string | null | undefined>): void {
  for (const [field, value] of Object.entries(refs)) if (typeof value === 'string') assertStorableText(value, field);
}

/** Refuses a signature an image file cannot be the whole input of: one tensor, image preprocessing. */
function assertTakesImageFile(signature: Signature, model: string): void {
  const specs = inputSpecs(signature);
  if (specs.length !== 1 || specs[0]!.preprocessing.kind !== 'image') {
    const takes = specs.map((spec) => `${spec.name} (${spec.preprocessing.kind})`).join(', ');
    throw new BadUserInputError(
      `${model} does not take an image file: its inputs are ${takes}; send them to predict or the Open Inference Protocol`,
      'body',
    );
  }
}

/** Refuses a version its owner archived: it no longer serves. */
export function assertServes(version: ModelVersion): void {
  if (version.status === 'ARCHIVED') {
    throw new ForbiddenError(`Version ${version.version} is archived and no longer serves`, {
      reason: 'VERSION_ARCHIVED',
    });
  }
}

export const overloaded = (what: string) =>
  new GraphQLError(`${what}; retry shortly`, {
    extensions: { code: ErrorCode.OVERLOADED, retryAfter: 1, http: { status: 503 } },
  });

/** The client's error for an inference engine failure during a call (predict, explain); others pass unchanged. */
export function inferenceCallError(error: unknown): unknown {
  if (error instanceof InferenceOverloadedError) return overloaded('The model is overloaded');
  if (error instanceof InferenceInputError) return new BadUserInputError(error.message, 'input.inputs');
  // The model broke its worker's runtime (the engine replaced the worker): the model's failure, not the caller's.
  if (error instanceof InferenceRuntimeError)
    return new ModelError('The model failed while running; the call was not billed');
  // A version stored before a budget (MODEL_MAX_PARAMETERS, MODEL_MAX_ACTIVATION_VALUES) it now exceeds.
  if (error instanceof InferenceArtifactError) {
    return new ModelError(`The model cannot be served: ${error.message}; the call was not billed`);
  }
  return error;
}

/** The status a call's usage record is written with: its error's code. */
export function errorCode(error: unknown): string {
  return error instanceof GraphQLError
    ? String(error.extensions.code ?? ErrorCode.INTERNAL_SERVER_ERROR)
    : ErrorCode.INTERNAL_SERVER_ERROR;
}

/**
 * Records a call that failed, with its error's code. Best effort: the caller learns why the call failed even when
 * its record cannot be written; the metering sweep then gives back what the call held.
 */
export async function recordFailedCall(
  metering: MeteringService,
  record: CallRecord,
  error: unknown,
  started: number,
): Promise<void> {
  await metering
    .record({
      ...record,
      status: errorCode(error),
      latencyMs: performance.now() - started,
      idempotentResponse: undefined,
    })
    .catch(() => undefined);
}

/** SHA-256 of a call as its requestId remembers it: another input under the same key is a CONFLICT. */
export function predictInputHash(input: PredictInput): string {
  const { model, version, inputs, topK, contractId } = input;
  const call = [model, version ?? 'latest', topK ?? 3, contractId ?? null];
  // Image files (predictImageFile) count by their digests: JSON would spell every byte out as a number. Their
  // text starts with a NUL, which JSON text never holds (it escapes it), so no JSON inputs hash the same.
  if (Array.isArray(inputs) && inputs.some((i) => i instanceof Uint8Array)) {
    const digests = inputs.map((i: Uint8Array) => createHash('sha256').update(i).digest('hex'));
    return createHash('sha256')
      .update(`\0files${JSON.stringify([...call, digests])}`)
      .digest('hex');
  }
  let json;
  try {
    json = JSON.stringify([...call, inputs]);
  } catch (error) {
    // JSON.stringify recurses: inputs nested thousands deep exhaust the stack (no legal input comes close).
    if (error instanceof RangeError) throw new BadUserInputError('input.inputs: nested too deeply', 'input.inputs');
    throw error;
  }
  return createHash('sha256').update(json).digest('hex');
}

export class PredictService {
  constructor(
    private readonly catalog: ServingCatalog,
    private readonly artifacts: ArtifactService,
    private readonly engine: InferenceEngine,
    private readonly authorizer: PredictAuthorizer,
    private readonly metering: MeteringService,
    private readonly encoder: InputEncoder,
  ) {}

  /**
   * Every call by an authenticated caller writes one usage record (OK or its error code); a retry answered
   * from an idempotency key writes none, since it is not counted again. The record ends what the call held: a
   * successful call's reserved units are billed and its answer stored under its requestId; a failed call's units
   * go back and its requestId is freed, so a retry runs.
   */
  async predict(actor: Actor, input: PredictInput): Promise<PredictResult> {
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
      // Set once checked: a refused requestId is not stored with the call's record.
      requestId: null,
    };
    let result: PredictResult;
    try {
      assertStorableRefs({
        'input.model': input.model,
        'input.version': input.version,
        'input.contractId': input.contractId,
      });
      const requestId = input.requestId == null ? null : checkRequestId(input.requestId, 'input.requestId');
      record.requestId = requestId;
      if (requestId !== null) {
        const claim = await this.metering.claim(callerId, requestId, predictInputHash(input), record.predictionId);
        if (claim.kind === 'replay') return this.#replay(actor, input, claim.response as StoredResult);
      }
      result = await this.#run(actor, input, record, started);
    } catch (error) {
      await recordFailedCall(this.metering, record, error, started);
      throw error;
    }
    await this.metering.record({
      ...record,
      status: 'OK',
      latencyMs: result.prediction.latencyMs,
      idempotentResponse: record.requestId === null ? undefined : this.#stored(result),
    });
    return result;
  }

  /**
   * predict on one image file sent as it is. The version is resolved, and a model that does not take one image
   * refused, before `readFile` reads the body: a refused upload is not read (nor billed, nor recorded).
   */
  async predictImageFile(
    actor: Actor,
    input: ImageFileInput,
    readFile: () => Promise<Uint8Array>,
  ): Promise<PredictResult> {
    assertStorableRefs({ model: input.model, version: input.version, contract: input.contractId });
    const target = await this.catalog.servedFor(actor, input, 'PREDICT');
    assertTakesImageFile(target.served.signature, input.model);
    const file = await readFile();
    return this.predict(actor, {
      ...input,
      inputs: [file],
      // Checked again on the signature the call runs with (an alias may have moved meanwhile).
      readInputs: (signature, inputs) => {
        assertTakesImageFile(signature, input.model);
        return { instances: inputs };
      },
    });
  }

  async #run(actor: Actor, input: PredictInput, record: CallRecord, started: number): Promise<PredictResult> {
    const call = await this.prepare(actor, input, record);
    const grant = await this.reserve(actor, input, call, record, (contract, units, predictionId) =>
      this.metering.reserve(contract, units, predictionId),
    );
    const outputs = await this.infer(call.served, call.encoded, call.topK);
    return {
      prediction: {
        id: record.predictionId,
        requestId: input.requestId ?? null,
        modelVersion: call.served.version,
        outputs,
        latencyMs: Math.round((performance.now() - started) * 1000) / 1000,
        contractId: grant.contract?.id ?? null,
      },
      warnings: call.warnings,
    };
  }

  /**
   * Resolves the version, checks it serves and the caller may run it (the record gets its model, version,
   * contract and units as they are known, for the call's usage record), and encodes the inputs.
   */
  async prepare(actor: Actor, input: PredictInput, record: CallRecord): Promise<PreparedCall> {
    const topK = input.topK ?? 3;
    if (!Number.isInteger(topK) || topK < 1 || topK > MAX_TOP_K) {
      throw new BadUserInputError(`topK must be 1 to ${MAX_TOP_K}`, 'input.topK');
    }
    const target = await this.catalog.servedFor(actor, input, 'PREDICT', (model) => (record.modelId = model.id));
    const { served } = target;
    const { version, signature } = served;
    record.modelVersionId = version.id;
    assertServes(version);
    const grant = await this.authorizer.authorize(actor, target.model, version, target.contractId);
    record.contract = grant.contract;
    const warnings =
      version.status === 'DEPRECATED'
        ? [`Version ${version.version} of ${input.model} is deprecated; move to a newer version`]
        : [];
    const { instances, root } = input.readInputs
      ? input.readInputs(signature, input.inputs)
      : { instances: input.inputs, root: undefined };
    const encoded = await this.encode(signature, instances, root, warnings);
    record.units = (Array.isArray(encoded) ? encoded[0]! : encoded).shape[0]!;
    return { model: target.model, served, grant, encoded, topK, warnings };
  }

  /** Reads instances against a signature into the engine's tensors (BAD_USER_INPUT naming what is wrong). */
  async encode(
    signature: Signature,
    instances: unknown,
    root: InputRoot | undefined,
    warnings: string[],
  ): Promise<TensorInput | TensorInput[]> {
    return (
      isNamed(signature)
        ? this.encoder.encodeNamed(signature, instances, root, undefined, warnings)
        : this.encoder.encode(signature, instances, root, undefined, warnings)
    ).catch((error: unknown) => {
      throw error instanceof PreprocessingOverloadedError ? overloaded('Image decoding is overloaded') : error;
    });
  }

  /**
   * Takes the prepared call's units with `take`. When the chosen contract stopped being usable, chooses again
   * from fresh rows (throwing the reason when none is usable). Resolves with the grant that pays.
   */
  async reserve(
    actor: Actor,
    input: PredictInput,
    call: PreparedCall,
    record: CallRecord,
    take: Reserve,
  ): Promise<PredictGrant> {
    let { grant } = call;
    if (!grant.contract) return grant;
    try {
      await take(grant.contract, record.units, record.predictionId);
    } catch (error) {
      if (!(error instanceof ContractInactiveError)) throw error;
      const { version } = call.served;
      grant = await this.authorizer.authorize(actor, call.model, version, input.contractId, { fresh: true });
      record.contract = grant.contract;
      if (grant.contract) await take(grant.contract, record.units, record.predictionId);
    }
    return grant;
  }

  /** Runs encoded inputs through the engine (micro-batched, off the event loop) and decodes the outputs. */
  async infer(served: ServedVersion, encoded: TensorInput | TensorInput[], topK: number): Promise<PredictionOutput[]> {
    const { signature, sha256 } = served;
    const model = this.artifacts.modelRef(sha256);
    try {
      return isNamed(signature)
        ? decodeNamedOutputs(signature, await this.engine.predictTensors(model, encoded as TensorInput[]), topK)
        : decodeOutputs(signature, await this.engine.predict(model, encoded as TensorInput), topK);
    } catch (error) {
      throw inferenceCallError(error);
    }
  }

  #stored({ prediction, warnings }: PredictResult): StoredResult {
    const { modelVersion, ...rest } = prediction;
    return { prediction: rest, versionId: modelVersion.id, warnings };
  }

  /** The stored answer, to a caller who may still see the model (it may have been made PRIVATE since). */
  async #replay(actor: Actor, input: PredictInput, stored: StoredResult): Promise<PredictResult> {
    const target = await this.catalog.resolve(input.model, input.version ?? 'latest');
    if (!target || !canView(actor.principal, target.model)) throw new NotFoundError('Model');
    const modelVersion = await this.catalog.versionById(stored.versionId);
    return { prediction: { ...stored.prediction, modelVersion }, warnings: stored.warnings };
  }
}
