/**
 * Errors the inference engine raises. Each carries a stable `code` so the GraphQL layer can
 * map it to an error extension without matching on messages. Failures inside tfjs arrive
 * typed too: an input the model rejects is an `InferenceInputError`, a model that does not
 * load an `InferenceArtifactError`, a worker whose runtime broke an `InferenceRuntimeError`.
 */
export type InferenceErrorCode = 'OVERLOADED' | 'BAD_INPUT' | 'BAD_ARTIFACT' | 'RUNTIME_FAILED' | 'CLOSED';

export class InferenceError extends Error {
  constructor(
    readonly code: InferenceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The batching queue is full; the request was rejected without waiting. Safe to retry later. */
export class InferenceOverloadedError extends InferenceError {
  declare readonly code: 'OVERLOADED';
  constructor(message: string) {
    super('OVERLOADED', message);
  }
}

/** The input tensor or model reference is malformed; retrying the same request cannot succeed. */
export class InferenceInputError extends InferenceError {
  declare readonly code: 'BAD_INPUT';
  constructor(message: string) {
    super('BAD_INPUT', message);
  }
}

/**
 * The model cannot do what was asked of it, whatever the input: gradients of a graph model, or of one whose
 * input is neither float nor token ids feeding an Embedding layer. A kind of input error (the request, not
 * the model, is refused; code BAD_INPUT), of its own class so callers can offer what works instead (the explain
 * API: KERNEL_SHAP or OCCLUSION, which need only predictions).
 */
export class InferenceUnsupportedError extends InferenceInputError {}

/** The artifact returned by `ModelRef.load()` is not a servable tfjs layers model. */
export class InferenceArtifactError extends InferenceError {
  declare readonly code: 'BAD_ARTIFACT';
  constructor(message: string) {
    super('BAD_ARTIFACT', message);
  }
}

/**
 * The worker's tfjs runtime failed (wasm memory out of bounds, out of memory) or the worker died
 * while running the task. The worker is replaced; the same request may break the next one too.
 */
export class InferenceRuntimeError extends InferenceError {
  declare readonly code: 'RUNTIME_FAILED';
  constructor(message: string) {
    super('RUNTIME_FAILED', message);
  }
}

/** The engine is closing or closed. */
export class InferenceClosedError extends InferenceError {
  declare readonly code: 'CLOSED';
  constructor() {
    super('CLOSED', 'the inference engine is closed');
  }
}
