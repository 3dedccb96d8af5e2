// The inference backend this test run asks for: INFERENCE_BACKEND, validated as the server validates it
// (`npm run test:native` sets tensorflow; unset: auto).
import { parseConfig } from '../../src/config.js';

export const TEST_BACKEND = parseConfig({ INFERENCE_BACKEND: process.env.INFERENCE_BACKEND }).inference.backend;
