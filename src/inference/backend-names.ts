// The tfjs backends the inference workers can run, in the order `auto` tries them. Kept apart from backend.ts,
// which loads tfjs, so that configuration can name them without loading it.
export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
/** A backend by name, or `auto`: the first of BACKEND_NAMES that initialises. */
export type BackendChoice = BackendName | 'auto';
