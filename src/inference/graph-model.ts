/**
 * Graph models (`format: "graph-model"`, what `tensorflowjs_converter` makes of a SavedModel): checked, loaded
 * with `tf.loadGraphModel` and described, in a worker. A GraphDef has no layers whose weights or output shapes
 * could be read before loading, so the checks are: bounds on the node list before anything is built, weights
 * exactly the graph's constants, only ops tfjs runs synchronously, and one run of two instances after loading.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelBudget } from './declared-weights.js';
import { InferenceArtifactError } from './errors.js';
import type { ModelSignature } from './worker-protocol.js';

/** Nodes a served graph may have: a MobileNetV2 has 178, large converted detectors a few thousand. */
const MAX_GRAPH_NODES = 10_000;
/** Characters of one node name (the converter's nest scopes: MobileNetV2's longest are ~170). */
const MAX_NODE_NAME_LENGTH = 1_000;
/** Inputs of one node (AddN, Concat and Pack take a list). */
const MAX_NODE_INPUTS = 1_000;
/** Serialised attributes of one node: strides, paddings, shapes, data formats; weights live in the manifest. */
const MAX_NODE_ATTR_CHARS = 16 * 1024;
/** Instances the load probe runs: two, so that a graph that fixes its batch to one is caught. */
const PROBE_INSTANCES = 2;

/**
 * tfjs ops that `execute` cannot run: control flow (loops, conditionals, tensor arrays and lists), ops whose
 * output shape depends on the data, and hash tables all need `executeAsync`. Served graphs run synchronously
 * in batches, so they are refused at upload.
 */
const ASYNC_CATEGORIES = new Set(['control', 'dynamic', 'hash_table']);
const SERVED_DTYPES = new Set(['float32', 'int32']);

interface GraphNode {
  name: string;
  op: string;
  attr?: Record<string, { tensor?: { tensorShape?: { dim?: { size?: string | number }[] } } }>;
}

interface TensorSignature {
  tensorShape?: { dim?: { size?: string | number }[]; unknownRank?: boolean };
}

export type GraphModelJson = tf.io.ModelJSON & {
  modelTopology: { node?: unknown; library?: { function?: unknown[] } };
  userDefinedMetadata?: { signature?: { outputs?: Record<string, TensorSignature> } };
  signature?: { outputs?: Record<string, TensorSignature> };
};

export function isGraphModelJson(modelJson: tf.io.ModelJSON): modelJson is GraphModelJson {
  return modelJson.format === 'graph-model';
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const shapeKey = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** A TensorShapeProto's dims (int64 strings in JSON, where a size of 0 is left out); null for an unknown rank. */
function dims(shape: TensorSignature['tensorShape']): number[] | null {
  if (!shape || shape.unknownRank) return null;
  return (shape.dim ?? []).map((dim) => Number(dim.size ?? 0));
}

/**
 * The node list is bounded and the manifest holds exactly the graph's constants, with their shapes, before
 * tfjs parses anything: a constant without weights fails only when run, and weights no constant uses are
 * stored, served and counted for nothing.
 */
function assertGraphStructure(modelJson: GraphModelJson): void {
  const { node: nodes, library } = modelJson.modelTopology;
  if (!Array.isArray(nodes) || nodes.length === 0)
    throw new InferenceArtifactError('a graph model needs modelTopology.node');
  if (nodes.length > MAX_GRAPH_NODES) {
    throw new InferenceArtifactError(`the graph has ${nodes.length} nodes; at most ${MAX_GRAPH_NODES} are served`);
  }
  if (Array.isArray(library?.function) && library.function.length > 0) {
    throw new InferenceArtifactError(
      'the graph defines functions (control flow: while loops, conditionals), which need executeAsync; served graph models run with execute',
    );
  }
  const names = new Set<string>();
  for (const node of nodes) {
    if (!isRecord(node) || typeof node.name !== 'string' || typeof node.op !== 'string') {
      throw new InferenceArtifactError('each graph node needs a name and an op');
    }
    const name = node.name.slice(0, 100);
    if (node.name.length > MAX_NODE_NAME_LENGTH || node.op.length > MAX_NODE_NAME_LENGTH) {
      throw new InferenceArtifactError(`node ${name}… has a name or op over ${MAX_NODE_NAME_LENGTH} characters`);
    }
    if (names.has(node.name)) throw new InferenceArtifactError(`the graph has two nodes named ${name}`);
    names.add(node.name);
    if (node.input !== undefined && (!Array.isArray(node.input) || node.input.length > MAX_NODE_INPUTS)) {
      throw new InferenceArtifactError(`node ${name} has more than ${MAX_NODE_INPUTS} inputs`);
    }
    if (node.attr !== undefined && JSON.stringify(node.attr).length > MAX_NODE_ATTR_CHARS) {
      throw new InferenceArtifactError(
        `node ${name} has attributes over ${MAX_NODE_ATTR_CHARS} characters; constants belong in the weights`,
      );
    }
  }
  const constants = new Map(
    (nodes as GraphNode[]).filter((node) => node.op === 'Const').map((node) => [node.name, node]),
  );
  const weights = modelJson.weightsManifest.flatMap((group) => group.weights);
  for (const weight of weights) {
    const constant = constants.get(weight.name);
    if (!constant)
      throw new InferenceArtifactError(`weightsManifest holds ${weight.name}, which no Const node of the graph is`);
    const declared = dims(constant.attr?.value?.tensor?.tensorShape);
    if (declared && shapeKey(declared) !== shapeKey(weight.shape)) {
      throw new InferenceArtifactError(
        `Const node ${weight.name} has shape ${shapeKey(declared)} but weightsManifest gives ${shapeKey(weight.shape)}`,
      );
    }
    constants.delete(weight.name);
  }
  const [missing] = constants.keys();
  if (missing !== undefined)
    throw new InferenceArtifactError(`Const node ${missing} has no weights in weightsManifest`);
}

/** The graph's nodes as tfjs mapped them: `category` is what tfjs knows of the op, absent for ops it lacks. */
function mappedNodes(model: tf.GraphModel): { name: string; op: string; category?: string }[] {
  // Not public API: GraphModel keeps its mapped graph on its executor. The hostile-graph tests fail if that moves.
  const { executor } = model as unknown as {
    executor: { graph: { nodes: Record<string, { name: string; op: string; category?: string }> } };
  };
  return Object.values(executor.graph.nodes);
}

function assertSynchronousOps(model: tf.GraphModel): void {
  for (const node of mappedNodes(model)) {
    if (node.category === undefined) {
      throw new InferenceArtifactError(`node ${node.name} uses op ${node.op}, which TensorFlow.js does not support`);
    }
    if (ASYNC_CATEGORIES.has(node.category)) {
      throw new InferenceArtifactError(
        `node ${node.name} uses op ${node.op} (${node.category}), which needs executeAsync; served graph models run with execute`,
      );
    }
  }
}

/** The declared shape of the model's single output, from the model's own signature if it has one. */
function declaredOutputShape(modelJson: GraphModelJson): number[] | null {
  const outputs = modelJson.userDefinedMetadata?.signature?.outputs ?? modelJson.signature?.outputs;
  const [output] = Object.values(outputs ?? {});
  return output ? dims(output.tensorShape) : null;
}

/**
 * Loads a graph model from `handler` once its structure is bounded, then refuses ops tfjs lacks or runs
 * only asynchronously, more than one input or output, a fixed batch size, and input dtypes the server does
 * not encode. When the input's shape is known, runs two instances of zeros (the model is served in merged
 * batches): a graph that fails, or does not give one output row per instance, is refused here rather than
 * on a caller's request. Returns the model and its signature (input names as the model's signature gives them).
 */
export async function loadGraphModel(
  modelJson: GraphModelJson,
  handler: tf.io.IOHandler,
  budget: ModelBudget,
): Promise<{ model: tf.GraphModel; signature: ModelSignature }> {
  assertGraphStructure(modelJson);
  // A graph's weights are plain tensors, not variables: the scope frees what a failed load decoded, and keeps
  // a loaded model's weights. A worker runs one task at a time, so nothing else allocates in it meanwhile.
  const engine = tf.engine();
  engine.startScope();
  let model: tf.GraphModel | undefined;
  try {
    model = await tf.loadGraphModel(handler);
    assertSynchronousOps(model);
    if (model.inputs.length !== 1 || model.outputs.length !== 1) {
      throw new InferenceArtifactError(
        `only single-input, single-output models are served; this one has ${model.inputs.length} inputs and ${model.outputs.length} outputs`,
      );
    }
    const [input] = model.inputs as [tf.ModelTensorInfo];
    const [inputName] = model.inputNodes as [string];
    if (!input.shape) throw new InferenceArtifactError(`input ${inputName} has no known shape`);
    const [batch, ...row] = input.shape;
    if (batch !== undefined && batch >= 0) {
      throw new InferenceArtifactError(
        `input ${inputName} fixes the batch size to ${batch}; served models must take any number of instances`,
      );
    }
    if (!SERVED_DTYPES.has(input.dtype)) {
      throw new InferenceArtifactError(`input ${inputName} is ${input.dtype}; served models take float32 or int32`);
    }
    const outputShape = (await probe(model, input.dtype, row, budget)) ?? declaredOutputShape(modelJson);
    const unknown = (dim: number) => (dim < 0 ? null : dim);
    return {
      model,
      signature: {
        inputs: [
          {
            name: inputName,
            shape: input.shape.map(unknown),
            dtype: input.dtype,
            embeddingInputDim: null,
            ...(input.dtype === 'int32' && { rangeRequired: true as const }),
          },
        ],
        outputs: [{ name: model.outputNodes[0]!, shape: outputShape?.map(unknown) ?? [] }],
      },
    };
  } catch (error) {
    model?.dispose();
    model = undefined;
    throw error;
  } finally {
    engine.endScope(model?.weights as tf.TensorContainer | undefined);
  }
}

/**
 * The bytes a probe's live tensors may reach above the model's weights, per probe instance, in multiples of
 * the activation budget's float32 bytes: a graph keeps an op's inputs alive while it computes its output,
 * and a branch's tensors until they are joined, so a few activations of the largest size live at once.
 */
const PROBE_LIVE_ACTIVATIONS = 4;

/**
 * The output shape (batch dimension -1) of a run on zeros, or null when the input has unknown dimensions.
 * A GraphDef's ops take their sizes from constants (Tile multiples, Fill dims, Pad, Resize…), which nothing
 * reads before running, so the run is profiled: any op whose output holds more than maxActivationValues values
 * per instance, or live tensors above PROBE_LIVE_ACTIVATIONS such outputs, refuses the graph, as the
 * layers-model check refuses a layer's output shape. The probe's own allocation is bounded by the same
 * measure only after the fact; the worker's memory holds it once.
 */
async function probe(
  model: tf.GraphModel,
  dtype: string,
  row: number[],
  budget: ModelBudget,
): Promise<number[] | null> {
  if (row.some((dim) => dim < 0)) return null;
  const { maxActivationValues } = budget;
  const values = row.reduce((size, dim) => size * dim, 1);
  if (values > maxActivationValues) {
    throw new InferenceArtifactError(
      `the input takes ${values} values per instance; at most ${maxActivationValues} are served`,
    );
  }
  let shape: number[] = [];
  let failure: unknown;
  const startBytes = tf.memory().numBytes;
  // tf.profile leaves profiling on if its query throws (every later kernel would be recorded): it never does.
  const profile = await tf.profile(() => {
    try {
      shape = tf.tidy(
        () => (model.execute(tf.zeros([PROBE_INSTANCES, ...row], dtype as 'float32' | 'int32')) as tf.Tensor).shape,
      );
    } catch (error) {
      failure = error;
    }
  });
  if (failure !== undefined) {
    // A wasm trap goes on as it is: the worker's runtime is broken, and the worker ends itself (worker.ts).
    if ((failure as Error).name === 'RuntimeError') throw failure;
    throw new InferenceArtifactError(`the graph does not run: ${(failure as Error).message}`);
  }
  for (const kernel of profile.kernels) {
    for (const outputShape of kernel.outputShapes) {
      const perInstance = Math.ceil(outputShape.reduce((size, dim) => size * dim, 1) / PROBE_INSTANCES);
      if (perInstance > maxActivationValues) {
        throw new InferenceArtifactError(
          `op ${kernel.name} outputs ${shapeKey(outputShape)} for ${PROBE_INSTANCES} instances: ${perInstance} values per instance; at most ${maxActivationValues} are served`,
        );
      }
    }
  }
  const liveBytes = profile.peakBytes - startBytes;
  const maxLiveBytes = PROBE_INSTANCES * PROBE_LIVE_ACTIVATIONS * maxActivationValues * 4;
  if (liveBytes > maxLiveBytes) {
    throw new InferenceArtifactError(
      `the graph holds ${liveBytes} bytes of tensors at once for ${PROBE_INSTANCES} instances; at most ${maxLiveBytes} are served`,
    );
  }
  if (shape[0] !== PROBE_INSTANCES) {
    throw new InferenceArtifactError(
      `the graph gives ${shapeKey(shape)} for ${PROBE_INSTANCES} instances; served models give one output row per instance`,
    );
  }
  return [-1, ...shape.slice(1)];
}
