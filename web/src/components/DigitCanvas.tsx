// A square to draw a digit on (mouse, pen or finger: pointer events), white strokes on black like MNIST, or to
// load an image file into (the keyboard's way in). `pixelsFor` reads it back at the model's input size; a
// drawing is framed the way MNIST's digits were (its bounding box scaled into the middle 20/28, centred on its
// centre of mass), or a digit drawn across the whole square reads as another digit.
import { useEffect, useState, type RefObject } from 'react';

const SIDE = 280;
const STROKE_WIDTH = 22;

function context(canvas: HTMLCanvasElement): CanvasRenderingContext2D {
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('This browser cannot draw on a canvas');
  return ctx;
}

function clear(canvas: HTMLCanvasElement): void {
  const ctx = context(canvas);
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.source = 'drawing';
}

/** MNIST's framing: the digit's box fills 20 of 28 pixels on its longer side. */
const DIGIT_SHARE = 20 / 28;

/** The drawing framed like an MNIST digit, on a canvas of the same size; the canvas itself when it is blank. */
function framed(canvas: HTMLCanvasElement): HTMLCanvasElement {
  const { width, height } = canvas;
  const ink = context(canvas).getImageData(0, 0, width, height).data;
  let [left, top, right, bottom, mass, sumX, sumY] = [width, height, -1, -1, 0, 0, 0];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const value = ink[(y * width + x) * 4]!;
      if (value === 0) continue;
      [left, top, right, bottom] = [Math.min(left, x), Math.min(top, y), Math.max(right, x), Math.max(bottom, y)];
      mass += value;
      sumX += value * x;
      sumY += value * y;
    }
  }
  if (mass === 0) return canvas;
  const [boxWidth, boxHeight] = [right - left + 1, bottom - top + 1];
  const scale = (DIGIT_SHARE * Math.min(width, height)) / Math.max(boxWidth, boxHeight);
  const out = document.createElement('canvas');
  out.width = width;
  out.height = height;
  clear(out);
  const [centreX, centreY] = [sumX / mass - left, sumY / mass - top];
  context(out).drawImage(
    canvas,
    left,
    top,
    boxWidth,
    boxHeight,
    width / 2 - centreX * scale,
    height / 2 - centreY * scale,
    boxWidth * scale,
    boxHeight * scale,
  );
  return out;
}

export interface PixelFormat {
  height: number;
  width: number;
  channels: number;
  /** UNIT: value / 255; NONE: 0..255. */
  scaling: 'UNIT' | 'NONE';
}

/**
 * The drawing resized to height × width, as the row-major [height, width, channels] numbers an image model
 * takes (what the server's image preprocessing would compute from a PNG of it: grey is BT.601 luma).
 */
export function pixelsFor(canvas: HTMLCanvasElement, format: PixelFormat): number[] {
  const small = document.createElement('canvas');
  small.width = format.width;
  small.height = format.height;
  const ctx = context(small);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(canvas.dataset.source === 'drawing' ? framed(canvas) : canvas, 0, 0, format.width, format.height);
  const rgba = ctx.getImageData(0, 0, format.width, format.height).data;
  const scale = format.scaling === 'UNIT' ? 1 / 255 : 1;
  const values: number[] = [];
  for (let i = 0; i < rgba.length; i += 4) {
    const [r, g, b, a] = [rgba[i]!, rgba[i + 1]!, rgba[i + 2]!, rgba[i + 3]!];
    if (format.channels === 1)
      values.push(r === g && g === b ? r * scale : (0.299 * r + 0.587 * g + 0.114 * b) * scale);
    else if (format.channels === 3) values.push(r * scale, g * scale, b * scale);
    else values.push(r * scale, g * scale, b * scale, a * scale);
  }
  return values;
}

export function DigitCanvas({ canvasRef }: { canvasRef: RefObject<HTMLCanvasElement | null> }) {
  const [unreadable, setUnreadable] = useState(false);
  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas) return;
    clear(canvas);
    let drawing = false;
    const point = (event: PointerEvent): [number, number] => {
      const box = canvas.getBoundingClientRect();
      return [((event.clientX - box.left) * SIDE) / box.width, ((event.clientY - box.top) * SIDE) / box.height];
    };
    const down = (event: PointerEvent) => {
      drawing = true;
      canvas.setPointerCapture(event.pointerId);
      const ctx = context(canvas);
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = STROKE_WIDTH;
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      ctx.beginPath();
      ctx.moveTo(...point(event));
      // A tap is a dot.
      ctx.lineTo(...point(event));
      ctx.stroke();
    };
    const move = (event: PointerEvent) => {
      if (!drawing) return;
      const ctx = context(canvas);
      ctx.lineTo(...point(event));
      ctx.stroke();
    };
    const up = () => {
      drawing = false;
    };
    canvas.addEventListener('pointerdown', down);
    canvas.addEventListener('pointermove', move);
    canvas.addEventListener('pointerup', up);
    canvas.addEventListener('pointercancel', up);
    return () => {
      canvas.removeEventListener('pointerdown', down);
      canvas.removeEventListener('pointermove', move);
      canvas.removeEventListener('pointerup', up);
      canvas.removeEventListener('pointercancel', up);
    };
  }, [canvasRef]);

  async function load(file: File) {
    const canvas = canvasRef.current;
    if (!canvas) return;
    setUnreadable(false);
    let bitmap: ImageBitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      setUnreadable(true);
      return;
    }
    clear(canvas);
    context(canvas).drawImage(bitmap, 0, 0, SIDE, SIDE);
    // A loaded image is sent as it is: the model's own preprocessing decides about it.
    canvas.dataset.source = 'image';
    bitmap.close();
  }

  return (
    <div className="digit-canvas">
      <canvas
        ref={canvasRef}
        width={SIDE}
        height={SIDE}
        role="img"
        aria-label="Drawing area: draw one digit with the mouse, a pen or a finger"
      />
      <div className="digit-canvas-controls">
        <button type="button" className="secondary" onClick={() => canvasRef.current && clear(canvasRef.current)}>
          Clear
        </button>
        <label>
          Or load an image
          <input
            type="file"
            accept="image/png,image/jpeg,image/webp"
            onChange={(event) => {
              const file = event.target.files?.[0];
              if (file) void load(file);
            }}
          />
        </label>
      </div>
      {unreadable && (
        <p role="alert" className="error">
          That file is not an image this browser can read (PNG, JPEG or WebP).
        </p>
      )}
    </div>
  );
}
