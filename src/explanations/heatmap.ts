// The heat map of an image explanation as a PNG: the input image in grey, with each pixel's attribution (summed
// over channels) blended over it — red where it raises the target's score, blue where it lowers it, more opaque
// the larger it is (relative to the image's largest). Runs in the preprocessing worker threads (sharp, and a loop
// over every pixel).
import sharp from 'sharp';

export interface HeatmapTask {
  /** The model's input for the image, [height, width, channels] row-major. */
  pixels: Float32Array;
  /** One attribution per pixel, [height, width]. */
  heat: Float32Array;
  height: number;
  width: number;
  channels: number;
  /** How the input maps back to 0..255: ×255 (`unit`), as is (`none`), or stretched from its min–max. */
  scaling: 'unit' | 'none' | 'minmax';
}

const MAX_OPACITY = 0.75;

export async function renderHeatmap(task: HeatmapTask): Promise<string> {
  const { pixels, heat, height, width, channels, scaling } = task;
  let low = 0;
  let high = 255;
  if (scaling === 'unit') high = 1;
  if (scaling === 'minmax') {
    low = Infinity;
    high = -Infinity;
    for (const value of pixels) {
      low = Math.min(low, value);
      high = Math.max(high, value);
    }
  }
  const range = high > low ? high - low : 1;
  let largest = 0;
  for (const value of heat) largest = Math.max(largest, Math.abs(value));
  const rgb = Buffer.alloc(height * width * 3);
  for (let p = 0; p < height * width; p++) {
    // Grey: the mean of the colour channels (alpha, the 4th, left out).
    const colours = Math.min(channels, 3);
    let sum = 0;
    for (let c = 0; c < colours; c++) sum += pixels[p * channels + c]!;
    const grey = Math.min(255, Math.max(0, ((sum / colours - low) / range) * 255));
    const strength = largest > 0 ? heat[p]! / largest : 0;
    const opacity = Math.abs(strength) * MAX_OPACITY;
    const [r, g, b] = strength >= 0 ? [255, 0, 0] : [0, 0, 255];
    rgb[p * 3] = Math.round(grey * (1 - opacity) + r * opacity);
    rgb[p * 3 + 1] = Math.round(grey * (1 - opacity) + g * opacity);
    rgb[p * 3 + 2] = Math.round(grey * (1 - opacity) + b * opacity);
  }
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}
