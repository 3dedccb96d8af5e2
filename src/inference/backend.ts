import path from 'node:path';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { BACKEND_NAMES, type BackendChoice, type BackendName } from './backend-names.js';
import { registerWasmGradientKernels } from './gradient-kernels.js';
// tfjs-node is an optional dependency whose native install fails offline and on some
// platforms. Importing it through a variable keeps TypeScript from requiring its types.
const TFJS_NODE_PACKAGE = '@tensorflow/tfjs-node';

/** What to do when a backend chosen explicitly cannot be initialised. */
const REMEDY: Partial<Record<BackendName, string>> = {
  tensorflow: `; \`npm run setup:native\` builds ${TFJS_NODE_PACKAGE} offline`,
};

let selection: Promise<BackendName> | undefined;

/**
 * Makes `choice` the tfjs backend of this thread; `auto` takes the native TensorFlow binding, else
 * WebAssembly, else plain JavaScript. An explicit choice that cannot be initialised rejects, naming the
 * backend and what to do. Each worker thread has its own tfjs engine, so every thread calls this once;
 * later calls share the first result.
 */
export function initBackend(choice: BackendChoice): Promise<BackendName> {
  selection ??= selectBackend(choice);
  return selection;
}

async function selectBackend(choice: BackendChoice): Promise<BackendName> {
  const candidates = choice === 'auto' ? BACKEND_NAMES : [choice];
  const failures: string[] = [];
  for (const name of candidates) {
    const failure = await tryBackend(name);
    if (failure === null) return name;
    failures.push(choice === 'auto' ? `${name}: ${failure}` : failure);
  }
  if (choice === 'auto') throw new Error(`no tfjs backend could be initialised: ${failures.join('; ')}`);
  throw new Error(`the ${choice} inference backend cannot be initialised: ${failures[0]}${REMEDY[choice] ?? ''}`);
}

/** null when `name` is now this thread's backend, else why not. */
async function tryBackend(name: BackendName): Promise<string | null> {
  try {
    if (name === 'tensorflow') {
      // Importing tfjs-node registers the 'tensorflow' backend in tfjs's registry (the same tfjs module).
      await import(TFJS_NODE_PACKAGE);
    } else if (name === 'wasm') {
      // In Node the wasm binaries are read from disk, so point tfjs at the package's dist folder.
      const require = createRequire(import.meta.url);
      setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
      // Training and attributions take gradients the wasm backend has no kernels for.
      registerWasmGradientKernels();
    }
    if (!(await tf.setBackend(name))) return 'tfjs refused it';
    await tf.ready();
    return null;
  } catch (error) {
    return firstLine(error instanceof Error ? error.message : String(error));
  }
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]!;
}
