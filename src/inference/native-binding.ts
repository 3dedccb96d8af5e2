import { createRequire } from 'node:module';

const TFJS_NODE_PACKAGE = '@tensorflow/tfjs-node';

let held = false;

/**
 * Loads tfjs-node's native binding (and with it libtensorflow) into this thread for the life of the process, when it
 * is built. Node unloads a worker's native addons when the worker ends, and libtensorflow does not survive being
 * unloaded and loaded again in one process: after an engine's workers had closed, the process crashed at exit in
 * libtensorflow's static destructors ("double free or corruption", a test file starting two servers). Held here, the
 * library stays loaded whatever the workers do. It costs one idle TensorFlow context in this thread.
 */
export function holdNativeBinding(): void {
  if (held) return;
  held = true;
  const require = createRequire(import.meta.url);
  let bindingPath: string;
  try {
    // Where tfjs-node itself finds its binding (lib/napi-v<N>/tfjs_binding.node).
    const preGyp = require('@mapbox/node-pre-gyp') as { find(packageJson: string): string };
    bindingPath = preGyp.find(require.resolve(`${TFJS_NODE_PACKAGE}/package.json`));
  } catch {
    return; // not installed: the workers cannot load it either, and say so
  }
  try {
    process.dlopen({ exports: {} }, bindingPath);
  } catch {
    // not built or not loadable: the workers fail to load it too, and report why
  }
}
