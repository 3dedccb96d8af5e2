import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PNG, type ColorType } from 'pngjs';
import { base64PngSize, decodeImage, decodePng, ImageDecodeError } from '../../src/preprocessing/image.js';

/** Encodes RGBA pixels (row-major) as a PNG of the given colour type (0 grey, 2 RGB, 4 grey+alpha, 6 RGBA). */
function encodePng(width: number, height: number, rgba: number[], colorType: ColorType): Buffer {
  const png = new PNG({ width, height });
  png.data = Buffer.from(rgba);
  return PNG.sync.write(png, { colorType });
}

/** Grey pixels, opaque. */
function greyPng(width: number, height: number, values: number[], colorType: ColorType = 0): Buffer {
  return encodePng(
    width,
    height,
    values.flatMap((v) => [v, v, v, 255]),
    colorType,
  );
}

const approx = (actual: Float32Array, expected: number[], tolerance = 1e-4) => {
  assert.equal(actual.length, expected.length, `length ${actual.length} is not ${expected.length}`);
  actual.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) <= tolerance, `[${i}] ${v} is not ${expected[i]}`));
};

describe('decodePng', () => {
  it('reads a grey PNG of the expected size exactly, scaled to [0, 1] or raw', () => {
    const bytes = greyPng(2, 2, [0, 64, 128, 255]);
    assert.deepEqual(
      decodePng(bytes, { height: 2, width: 2, channels: 1, scaling: 'none' }),
      Float32Array.from([0, 64, 128, 255]),
    );
    assert.deepEqual(
      decodePng(bytes, { height: 2, width: 2, channels: 1, scaling: 'unit' }),
      Float32Array.from([0, 64 / 255, 128 / 255, 1]),
    );
  });

  it('lays pixels out row-major as [height, width, channels]', () => {
    // 3 wide, 1 high: red, green, blue
    const bytes = encodePng(3, 1, [255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255], 2);
    assert.deepEqual(
      decodePng(bytes, { height: 1, width: 3, channels: 3, scaling: 'none' }),
      Float32Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255]),
    );
  });

  it('converts colour to grey with BT.601 luma and keeps grey pixels exact', () => {
    const bytes = encodePng(2, 1, [255, 0, 0, 255, 200, 200, 200, 255], 6);
    approx(decodePng(bytes, { height: 1, width: 2, channels: 1, scaling: 'none' }), [0.299 * 255, 200]);
  });

  it('expands grey to three equal channels', () => {
    const bytes = greyPng(1, 1, [77]);
    assert.deepEqual(
      decodePng(bytes, { height: 1, width: 1, channels: 3, scaling: 'none' }),
      Float32Array.from([77, 77, 77]),
    );
  });

  it('composites transparency over black for 1 and 3 channels and keeps alpha for 4', () => {
    // opaque white, half-transparent white, fully transparent white
    const rgba = [255, 255, 255, 255, 255, 255, 255, 102, 255, 255, 255, 0];
    const bytes = encodePng(3, 1, rgba, 6);
    assert.deepEqual(
      decodePng(bytes, { height: 1, width: 3, channels: 1, scaling: 'none' }),
      Float32Array.from([255, 102, 0]),
    );
    assert.deepEqual(
      decodePng(bytes, { height: 1, width: 3, channels: 3, scaling: 'none' }),
      Float32Array.from([255, 255, 255, 102, 102, 102, 0, 0, 0]),
    );
    assert.deepEqual(decodePng(bytes, { height: 1, width: 3, channels: 4, scaling: 'none' }), Float32Array.from(rgba));
  });

  it('reads grey-with-alpha PNGs', () => {
    const bytes = encodePng(1, 1, [90, 90, 90, 0], 4);
    assert.deepEqual(
      decodePng(bytes, { height: 1, width: 1, channels: 4, scaling: 'none' }),
      Float32Array.from([90, 90, 90, 0]),
    );
  });

  describe('resizing', () => {
    it('nearest: upscaling repeats pixels, downscaling picks the pixel under each centre', () => {
      const small = greyPng(2, 2, [10, 20, 30, 40]);
      assert.deepEqual(
        decodePng(small, { height: 4, width: 4, channels: 1, scaling: 'none', resize: 'nearest' }),
        Float32Array.from([10, 10, 20, 20, 10, 10, 20, 20, 30, 30, 40, 40, 30, 30, 40, 40]),
      );
      const large = greyPng(4, 4, [...Array(16).keys()]);
      // centres of the 2×2 target fall in source rows/columns 1 and 3
      assert.deepEqual(
        decodePng(large, { height: 2, width: 2, channels: 1, scaling: 'none', resize: 'nearest' }),
        Float32Array.from([5, 7, 13, 15]),
      );
    });

    it('bilinear: half-pixel centres, clamped at the edges', () => {
      // 2 → 4 wide: source positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
      approx(
        decodePng(greyPng(2, 1, [0, 100]), { height: 1, width: 4, channels: 1, scaling: 'none' }),
        [0, 25, 75, 100],
      );
      // 2×2 → 1×1 samples the middle: the mean of the four
      approx(decodePng(greyPng(2, 2, [0, 40, 80, 120]), { height: 1, width: 1, channels: 1, scaling: 'none' }), [60]);
    });

    it('resizes every channel and then scales', () => {
      const bytes = encodePng(2, 1, [0, 255, 0, 255, 255, 255, 0, 255], 2);
      approx(decodePng(bytes, { height: 1, width: 1, channels: 3, scaling: 'unit' }), [0.5, 1, 0]);
    });

    it('stretches to the target aspect ratio', () => {
      const out = decodePng(greyPng(4, 1, [0, 0, 255, 255]), { height: 3, width: 2, channels: 1, scaling: 'unit' });
      approx(out, [0, 1, 0, 1, 0, 1]);
    });
  });

  it('rejects bytes that are not a PNG or are corrupt', () => {
    const options = { height: 1, width: 1, channels: 1, scaling: 'unit' } as const;
    assert.throws(() => decodePng(Buffer.from('GIF89a, not a png at all'), options), ImageDecodeError);
    const truncated = greyPng(8, 8, Array(64).fill(9)).subarray(0, 40);
    assert.throws(() => decodePng(truncated, options), ImageDecodeError);
  });

  it('rejects images larger than maxSourcePixels before decoding', () => {
    const bytes = greyPng(10, 10, Array(100).fill(0));
    assert.throws(
      () => decodePng(bytes, { height: 1, width: 1, channels: 1, scaling: 'unit', maxSourcePixels: 99 }),
      /10×10; at most 99 pixels/,
    );
    assert.equal(
      decodePng(bytes, { height: 1, width: 1, channels: 1, scaling: 'unit', maxSourcePixels: 100 }).length,
      1,
    );
  });

  it('rejects invalid options', () => {
    const bytes = greyPng(1, 1, [0]);
    assert.throws(() => decodePng(bytes, { height: 0, width: 1, channels: 1, scaling: 'unit' }), /height/);
    assert.throws(() => decodePng(bytes, { height: 1, width: 1, channels: 2 as 1, scaling: 'unit' }), /channels/);
  });
});

describe('decodeImage', () => {
  const bytes = greyPng(2, 1, [0, 255]);
  const options = { height: 1, width: 2, channels: 1, scaling: 'unit' } as const;

  it('accepts plain base64 and data URLs', () => {
    const expected = Float32Array.from([0, 1]);
    assert.deepEqual(decodeImage(bytes.toString('base64'), options), expected);
    assert.deepEqual(decodeImage(`data:image/png;base64,${bytes.toString('base64')}`, options), expected);
  });

  it('rejects text that is not base64', () => {
    assert.throws(() => decodeImage('not base64!', options), /not valid base64/);
    assert.throws(() => decodeImage(Buffer.from('plain text').toString('base64'), options), /not a PNG/);
  });
});

describe('base64PngSize', () => {
  it('reads the size from the first characters, through data URLs and whitespace', () => {
    const base64 = greyPng(3, 2, [0, 1, 2, 3, 4, 5]).toString('base64');
    assert.deepEqual(base64PngSize(base64), { width: 3, height: 2 });
    const spaced = `data:image/png;base64,${base64.slice(0, 10)}\n  ${base64.slice(10, 30)}\r\n${base64.slice(30)}`;
    assert.deepEqual(base64PngSize(spaced), { width: 3, height: 2 });
    // Only the header is read: a truncated body still gives the size (decoding then refuses it).
    assert.deepEqual(base64PngSize(base64.slice(0, 32)), { width: 3, height: 2 });
  });

  it('refuses what is not a PNG header', () => {
    assert.throws(
      () => base64PngSize(Buffer.from('GIF89a, not a png at all, really').toString('base64')),
      ImageDecodeError,
    );
    assert.throws(() => base64PngSize('iVBORw0KGgo'), /not a PNG/);
    assert.throws(() => base64PngSize('!'.repeat(40)), /not a PNG/);
  });
});
