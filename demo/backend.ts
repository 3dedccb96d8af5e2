// The training backend: tfjs's WebAssembly backend (tfjs-node cannot be installed offline, and the plain-JS
// 'cpu' backend is several times slower), with the gradient kernels it lacks (src/inference/gradient-kernels.ts,
// shared with the inference workers' attributions).
import { initBackend } from '../src/inference/backend.js';

/** Makes the wasm backend, gradient kernels included, the active backend. */
export function initTrainingBackend(): Promise<string> {
  return initBackend('wasm');
}
