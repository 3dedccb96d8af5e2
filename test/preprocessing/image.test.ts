import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PNG, type ColorType } from 'pngjs';
import sharp from 'sharp';
import { decodeImage, decodeImages, imageFormat, ImageDecodeError, imageSize } from '../../src/preprocessing/image.js';

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

describe('decodeImage: PNG through sharp', () => {
  it('reads a grey PNG of the expected size exactly, scaled to [0, 1] or raw', async () => {
    const bytes = greyPng(2, 2, [0, 64, 128, 255]);
    assert.deepEqual(
      await decodeImage(bytes, { height: 2, width: 2, channels: 1, scaling: 'none' }),
      Float32Array.from([0, 64, 128, 255]),
    );
    assert.deepEqual(
      await decodeImage(bytes, { height: 2, width: 2, channels: 1, scaling: 'unit' }),
      Float32Array.from([0, 64 / 255, 128 / 255, 1]),
    );
  });

  it('lays pixels out row-major as [height, width, channels]', async () => {
    // 3 wide, 1 high: red, green, blue
    const bytes = encodePng(3, 1, [255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255], 2);
    assert.deepEqual(
      await decodeImage(bytes, { height: 1, width: 3, channels: 3, scaling: 'none' }),
      Float32Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255]),
    );
  });

  it('converts colour to grey with BT.601 luma and keeps grey pixels exact', async () => {
    const bytes = encodePng(2, 1, [255, 0, 0, 255, 200, 200, 200, 255], 6);
    approx(await decodeImage(bytes, { height: 1, width: 2, channels: 1, scaling: 'none' }), [0.299 * 255, 200]);
  });

  it('expands grey to three equal channels', async () => {
    const bytes = greyPng(1, 1, [77]);
    assert.deepEqual(
      await decodeImage(bytes, { height: 1, width: 1, channels: 3, scaling: 'none' }),
      Float32Array.from([77, 77, 77]),
    );
  });

  it('composites transparency over black for 1 and 3 channels and keeps alpha for 4', async () => {
    // opaque white, half-transparent white, fully transparent white
    const rgba = [255, 255, 255, 255, 255, 255, 255, 102, 255, 255, 255, 0];
    const bytes = encodePng(3, 1, rgba, 6);
    assert.deepEqual(
      await decodeImage(bytes, { height: 1, width: 3, channels: 1, scaling: 'none' }),
      Float32Array.from([255, 102, 0]),
    );
    assert.deepEqual(
      await decodeImage(bytes, { height: 1, width: 3, channels: 3, scaling: 'none' }),
      Float32Array.from([255, 255, 255, 102, 102, 102, 0, 0, 0]),
    );
    assert.deepEqual(
      await decodeImage(bytes, { height: 1, width: 3, channels: 4, scaling: 'none' }),
      Float32Array.from(rgba),
    );
  });

  it('reads grey-with-alpha PNGs', async () => {
    const bytes = encodePng(1, 1, [90, 90, 90, 0], 4);
    assert.deepEqual(
      await decodeImage(bytes, { height: 1, width: 1, channels: 4, scaling: 'none' }),
      Float32Array.from([90, 90, 90, 0]),
    );
  });

  describe('resizing', () => {
    it('nearest: upscaling repeats pixels, downscaling picks the pixel under each centre', async () => {
      const small = greyPng(2, 2, [10, 20, 30, 40]);
      assert.deepEqual(
        await decodeImage(small, { height: 4, width: 4, channels: 1, scaling: 'none', interpolation: 'nearest' }),
        Float32Array.from([10, 10, 20, 20, 10, 10, 20, 20, 30, 30, 40, 40, 30, 30, 40, 40]),
      );
      const large = greyPng(4, 4, [...Array(16).keys()]);
      // centres of the 2×2 target fall in source rows/columns 1 and 3
      assert.deepEqual(
        await decodeImage(large, { height: 2, width: 2, channels: 1, scaling: 'none', interpolation: 'nearest' }),
        Float32Array.from([5, 7, 13, 15]),
      );
    });

    it('bilinear: half-pixel centres, clamped at the edges', async () => {
      // 2 → 4 wide: source positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
      approx(
        await decodeImage(greyPng(2, 1, [0, 100]), { height: 1, width: 4, channels: 1, scaling: 'none' }),
        [0, 25, 75, 100],
      );
      // 2×2 → 1×1 samples the middle: the mean of the four
      approx(
        await decodeImage(greyPng(2, 2, [0, 40, 80, 120]), { height: 1, width: 1, channels: 1, scaling: 'none' }),
        [60],
      );
    });

    it('resizes every channel and then scales', async () => {
      const bytes = encodePng(2, 1, [0, 255, 0, 255, 255, 255, 0, 255], 2);
      approx(await decodeImage(bytes, { height: 1, width: 1, channels: 3, scaling: 'unit' }), [0.5, 1, 0]);
    });

    it('stretches to the target aspect ratio', async () => {
      const out = await decodeImage(greyPng(4, 1, [0, 0, 255, 255]), {
        height: 3,
        width: 2,
        channels: 1,
        scaling: 'unit',
      });
      approx(out, [0, 1, 0, 1, 0, 1]);
    });
  });

  it('rejects bytes that are not a PNG or are corrupt', async () => {
    const options = { height: 1, width: 1, channels: 1, scaling: 'unit' } as const;
    await assert.rejects(decodeImage(Buffer.from('GIF89a, not a png at all'), options), ImageDecodeError);
    const truncated = greyPng(8, 8, Array(64).fill(9)).subarray(0, 40);
    await assert.rejects(decodeImage(truncated, options), ImageDecodeError);
  });

  it('rejects images larger than maxSourcePixels before decoding', async () => {
    const bytes = greyPng(10, 10, Array(100).fill(0));
    await assert.rejects(
      decodeImage(bytes, { height: 1, width: 1, channels: 1, scaling: 'unit', maxSourcePixels: 99 }),
      /10×10; at most 99 pixels/,
    );
    assert.equal(
      (await decodeImage(bytes, { height: 1, width: 1, channels: 1, scaling: 'unit', maxSourcePixels: 100 })).length,
      1,
    );
  });

  it('rejects invalid options', async () => {
    const bytes = greyPng(1, 1, [0]);
    await assert.rejects(decodeImage(bytes, { height: 0, width: 1, channels: 1, scaling: 'unit' }), /height/);
    await assert.rejects(decodeImage(bytes, { height: 1, width: 1, channels: 2 as 1, scaling: 'unit' }), /channels/);
  });
});

/** A 300×200 RGB gradient (red across, green down, blue constant) as raw bytes, and as sharp encodes it. */
const GRADIENT = { width: 300, height: 200 };
function gradientRaw(): Buffer {
  const { width, height } = GRADIENT;
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      raw.set([Math.round((x * 255) / (width - 1)), Math.round((y * 255) / (height - 1)), 128], (y * width + x) * 3);
    }
  }
  return raw;
}
const gradient = () => sharp(gradientRaw(), { raw: { ...GRADIENT, channels: 3 } });

/** The pixels sharp decodes from `bytes` (turned upright), as RGB values: what the model gets before resizing. */
async function sharpRgb(bytes: Buffer): Promise<number[]> {
  const { data } = await sharp(bytes).rotate().removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return Array.from(data);
}

/** A JPEG whose SOF header claims another size (the pixels after it are the 300×200 gradient's). */
function withClaimedSize(jpeg: Buffer, width: number, height: number): Buffer {
  const patched = Buffer.from(jpeg);
  for (let at = 2; at < patched.length; at += 2 + patched.readUInt16BE(at + 2)) {
    const marker = patched[at + 1]!;
    if (marker >= 0xc0 && marker <= 0xc3) {
      patched.writeUInt16BE(height, at + 5);
      patched.writeUInt16BE(width, at + 7);
      return patched;
    }
  }
  throw new Error('no SOF marker');
}

describe('decodeImage: JPEG and WebP', () => {
  const full = { ...GRADIENT, channels: 3, scaling: 'none' } as const;

  it('tells formats by their magic bytes', async () => {
    assert.equal(imageFormat(await gradient().jpeg().toBuffer()), 'jpeg');
    assert.equal(imageFormat(await gradient().png().toBuffer()), 'png');
    assert.equal(imageFormat(await gradient().webp().toBuffer()), 'webp');
    assert.equal(imageFormat(await gradient().gif().toBuffer()), null);
    assert.equal(imageFormat(Buffer.from('RIFF....WAVE')), null);
  });

  it('decodes a JPEG to the pixels sharp decodes, and a lossless WebP and a PNG exactly', async () => {
    const jpeg = await gradient().jpeg({ quality: 90 }).toBuffer();
    assert.deepEqual(Array.from(await decodeImage(jpeg, full)), await sharpRgb(jpeg));
    const source = Array.from(gradientRaw());
    assert.deepEqual(Array.from(await decodeImage(await gradient().webp({ lossless: true }).toBuffer(), full)), source);
    assert.deepEqual(Array.from(await decodeImage(await gradient().png().toBuffer(), full)), source);
    // A lossy WebP decodes near its source.
    const lossy = await decodeImage(await gradient().webp({ quality: 95 }).toBuffer(), full);
    const error = lossy.reduce((sum, v, i) => sum + Math.abs(v - source[i]!), 0) / lossy.length;
    assert.ok(error < 3, `mean error ${error}`);
  });

  it('accepts base64 and data URLs of JPEG, PNG and WebP, and refuses other data URLs', async () => {
    const jpeg = await gradient().jpeg().toBuffer();
    const expected = await decodeImage(jpeg, full);
    for (const type of ['image/jpeg', 'image/jpg', 'image/png', 'image/webp']) {
      // The declared type is not trusted: the bytes say what the image is.
      assert.deepEqual(await decodeImage(`data:${type};base64,${jpeg.toString('base64')}`, full), expected);
    }
    assert.deepEqual(await decodeImage(jpeg.toString('base64'), full), expected);
    await assert.rejects(decodeImage(`data:image/gif;base64,${jpeg.toString('base64')}`, full), /data URLs must be/);
    await assert.rejects(decodeImage(`data:image/jpeg,${jpeg.toString('base64')}`, full), /data URLs must be/);
    const gif = (await gradient().gif().toBuffer()).toString('base64');
    await assert.rejects(decodeImage(gif, full), /not a JPEG, PNG or WebP image/);
  });

  it('reads 16-bit PNGs as 8-bit values (65535 → 255)', async () => {
    const grey16 = await sharp(new Uint16Array([0, 65535, 32768, 256]), { raw: { width: 2, height: 2, channels: 1 } })
      .toColourspace('grey16')
      .png()
      .toBuffer();
    assert.equal((await sharp(grey16).metadata()).depth, 'ushort');
    assert.deepEqual(
      await decodeImage(grey16, { width: 2, height: 2, channels: 1, scaling: 'none' }),
      Float32Array.from([0, 255, 128, 1]),
    );
  });

  it('turns a JPEG upright by its EXIF orientation', async () => {
    // Orientation 6: the stored pixels are to be turned 90° clockwise to be seen upright.
    const jpeg = await gradient().jpeg().withMetadata({ orientation: 6 }).toBuffer();
    assert.deepEqual(await imageSize(jpeg), { width: 200, height: 300 });
    const upright = await decodeImage(jpeg, { width: 200, height: 300, channels: 3, scaling: 'none' });
    assert.deepEqual(Array.from(upright), await sharpRgb(jpeg));
  });

  it('refuses a JPEG whose header claims 50000×50000 from the header, before decoding', async () => {
    const huge = withClaimedSize(await gradient().jpeg().toBuffer(), 50_000, 50_000);
    assert.deepEqual(await imageSize(huge), { width: 50_000, height: 50_000 });
    const error = await decodeImage(huge, { ...full, maxSourcePixels: 4 * 1024 * 1024 }).catch((e: unknown) => e);
    assert.ok(error instanceof ImageDecodeError);
    assert.match(error.message, /image is 50000×50000; at most 4194304 pixels are accepted/);
  });

  it('refuses corrupt and truncated files with a typed error', async () => {
    const jpeg = await gradient().jpeg().toBuffer();
    const webp = await gradient().webp().toBuffer();
    for (const broken of [jpeg.subarray(0, jpeg.length / 2), webp.subarray(0, webp.length / 2), jpeg.subarray(0, 3)]) {
      await assert.rejects(decodeImage(broken, full), ImageDecodeError);
    }
    // A PNG whose compressed pixels are garbage (its header intact).
    const garbled = await gradient().png().toBuffer();
    garbled.fill(0x55, 100, garbled.length - 100);
    await assert.rejects(decodeImage(garbled, full), ImageDecodeError);
  });

  it('refuses text that is not base64', async () => {
    await assert.rejects(decodeImage('not base64!', full), /not valid base64/);
    await assert.rejects(decodeImage(Buffer.from('plain text').toString('base64'), full), /not a JPEG, PNG or WebP/);
  });
});

describe('decodeImages: one call', () => {
  const options = { width: 30, height: 20, channels: 3, scaling: 'unit' } as const;

  it('decodes every image, one after the other, and reports their source sizes', async () => {
    const small = await gradient().resize(30, 20).png().toBuffer();
    const large = await gradient().jpeg().toBuffer();
    const { pixels, sources } = await decodeImages([small, large.toString('base64')], options);
    assert.equal(pixels.length, 2 * 30 * 20 * 3);
    assert.deepEqual(sources, [
      { width: 30, height: 20 },
      { width: 300, height: 200 },
    ]);
    assert.deepEqual(pixels.subarray(0, 1800), await decodeImage(small, options));
    assert.deepEqual(pixels.subarray(1800), await decodeImage(large, options));
  });

  it('checks every header (sizes, policy, the call budget) before decoding any, naming the image', async () => {
    const good = await gradient().jpeg().toBuffer();
    const broken = good.subarray(0, good.length - 400);
    // The truncated image is first, but the second's header is over budget: refused before any decoding.
    const budget = await decodeImages([broken, good], { ...options, maxPixelsPerCall: 100_000 }).catch((e) => e);
    assert.ok(budget instanceof ImageDecodeError);
    assert.equal(budget.index, 1);
    assert.match(budget.message, /at most 100000 pixels in all/);
    const corrupt = await decodeImages([good, broken], options).catch((e) => e);
    assert.equal(corrupt.index, 1);
  });

  it("applies the signature's size policy: refuse other sizes, refuse sources below minSourceSize", async () => {
    const tiny = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    const exact = await gradient().resize(30, 20).webp().toBuffer();
    await assert.rejects(
      decodeImages([exact, tiny], { ...options, resize: 'refuse' }),
      (error: ImageDecodeError) =>
        error.index === 1 && /image is 1×1; this model takes exactly 30×20 \(it does not resize\)/.test(error.message),
    );
    assert.equal((await decodeImages([exact], { ...options, resize: 'refuse' })).pixels.length, 1800);
    await assert.rejects(
      decodeImages([tiny], { ...options, minSourceSize: { width: 15, height: 10 } }),
      /image is 1×1; this model takes images of at least 15×10/,
    );
    // Stretching (declared or not) resizes the 1×1 image to a flat 30×20.
    const { pixels } = await decodeImages([tiny], options);
    assert.ok(pixels.every((v) => Math.abs(v - 128 / 255) < 1e-6));
  });
});
