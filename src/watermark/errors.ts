/** A model, key or option the watermarking library cannot work with; the message says why. */
export class WatermarkError extends Error {
  override name = 'WatermarkError';
}
