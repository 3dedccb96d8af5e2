// A square to draw a digit on (mouse, pen or finger: pointer events), white strokes on black like MNIST, or to
// load an image file into (the keyboard's way in). `pixelsFor` reads it back at the model's input size.
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
  ctx.drawImage(canvas, 0, 0, format.width, format.height);
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
