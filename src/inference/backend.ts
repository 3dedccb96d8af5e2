import path from 'node:path';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

// tfjs-node is an optional dependency whose native install fails offline and on some
// platforms. Importing it through a variable keeps TypeScript from requiring its types.
const TFJS_NODE_PACKAGE = '@tensorflow/tfjs-node';

let selection: Promise<BackendName> | undefined;

/**
 * Selects the fastest tfjs backend that works in this thread: the native TensorFlow
 * binding, else WebAssembly, else plain JavaScript. Each worker thread has its own tfjs
 * engine, so every thread calls this once; repeated calls share the first result.
 */
export function initBackend(): Promise<BackendName> {
  selection ??= selectBackend();
  return selection;
}

async function selectBackend(): Promise<BackendName> {
  if (await tryTensorflowBackend()) return 'tensorflow';
  if (await tryWasmBackend()) return 'wasm';
  if (!(await tf.setBackend('cpu'))) throw new Error('no tfjs backend could be initialised');
  await tf.ready();
  return 'cpu';
}

async function tryTensorflowBackend(): Promise<boolean> {
  try {
    // Importing tfjs-node registers the 'tensorflow' backend in tfjs's process-global registry.
    await import(TFJS_NODE_PACKAGE);
    return await tf.setBackend('tensorflow');
  } catch {
    return false;
  }
}

async function tryWasmBackend(): Promise<boolean> {
  try {
    // In Node the wasm binaries are read from disk, so point tfjs at the package's dist folder.
    const require = createRequire(import.meta.url);
    const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
    setWasmPaths(wasmDir + path.sep);
    return await tf.setBackend('wasm');
  } catch {
    return false;
  }
}
