// Measures the watermarking library (src/watermark) on the demo models in demo/artifacts (made by
// `npx tsx demo/train.ts --cnn`): a margin sweep, then at each model's chosen margin fidelity, robustness
// to weight edits and to training, false positives, and cost. Prints tables; exits 1 if a target fails.
//
// Usage: tsx bench/watermark.ts [--only mnist-mlp,mnist-cnn,spam-classifier] [--quick]
//   --quick skips everything that trains (fine-tuning, distillation, independently trained models).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { initTrainingBackend } from '../demo/backend.js';
import type { TextPreprocessing } from '../src/preprocessing/text.js';
import { seededRandom, seedMathRandom, shuffle, type Random } from '../demo/random.js';
import { parseModelJson, type WeightSpec } from '../src/watermark/artifact.js';
import { ROW_SUPPORT } from '../src/watermark/carrier.js';
import {
  decide,
  decodeMarks,
  deriveMarkKey,
  inputStatistics,
  MARK_BITS,
  markArtifact,
  matchThreshold,
  selectMarkTensor,
  DEFAULT_FALSE_POSITIVE_RATE,
  type InputStatistics,
  type MarkKey,
  type WeightsArtifact,
} from '../src/watermark/index.js';
import {
  averageArtifacts,
  noiseArtifact,
  permuteAndScaleUnits,
  pruneArtifact,
  quantizeArtifact,
  type UnitSymmetryPart,
} from './watermark/attacks.js';
import { alternativeBitErrors, blindMarginFor, markBlind } from './watermark/ablation.js';
import { disposeSplit, mnistSplit, spamSplit, type Split } from './watermark/data.js';
import { freshModel, loadModel, readArtifact, saveArtifact } from './watermark/models.js';
import { percent, points, printTable, seconds, type Cell } from './watermark/report.js';
import {
  accuracyOf,
  agreementOf,
  fit,
  layerInputs,
  predictClasses,
  predictProbabilities,
} from './watermark/training.js';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'demo', 'artifacts');
// Bench keys only; a server derives its keys from its own secret.
const SECRET = Buffer.from('bench/watermark.ts: not a server secret');

const MAX_ACCURACY_DROP = 0.005;
const MIN_AGREEMENT = 0.995;
const MAX_ERRORS = { prune70: 0.05, noise: 0.01, fineTune: 0.05 };
const NOISE = 0.3; // × std of each tensor
const NOISE_DRAWS = 5;
const SWEEP_MARGINS = [0.25, 0.5, 0.75, 1, 1.25, 1.5, 2];
const FINE_TUNE = { epochs: 10, learningRate: 1e-3 }; // the demo models were trained at 1e-3
const HEAVY_FINE_TUNE = { epochs: 10, learningRate: 1e-2 };
const UNMARKED = { examples: 1000, epochs: 2 };
/** A wrong key counts as a false positive if it reaches the single-key threshold (the most lenient). */
const SINGLE_KEY_THRESHOLD = matchThreshold(MARK_BITS, DEFAULT_FALSE_POSITIVE_RATE);

interface Card {
  metrics: { accuracy: number };
  training: { seed: number; epochs: number; batchSize: number };
  signature: { input: { preprocessing: unknown } };
}

interface BenchModel {
  slug: string;
  /** Chosen from the sweep: the smallest tried that meets every target with room to spare. */
  margin: number;
  /** Shape the marks with this many training examples (src/watermark/shaping.ts); absent: least-norm marks. */
  calibrationExamples?: number;
  split(card: Card): Split;
  /** Where the marked tensor's hidden units pass, for the permutation attack; specs in manifest order. */
  unitSymmetry(specs: WeightSpec[]): UnitSymmetryPart[];
  wrongKeys: number;
  /** Independently trained unmarked models of this architecture. */
  unmarkedModels: number;
  /** Also compare with a blind mark decoded from the suspect alone (bench/watermark/ablation.ts). */
  ablation: boolean;
}

const sizeOf = (spec: WeightSpec) => spec.shape.reduce((a, b) => a * b, 1);
/** A tensor whose last axis is the units (a kernel's outputs, a bias). */
const outputsOf = (spec: WeightSpec, power: 1 | -1 = 1): UnitSymmetryPart => ({
  tensor: spec.name,
  axis: { outer: sizeOf(spec) / spec.shape.at(-1)!, units: spec.shape.at(-1)!, inner: 1 },
  power,
});
/** A Dense kernel whose input rows are the units (channel fastest, as Flatten lays out channels-last). */
const inputsOf = (spec: WeightSpec, units: number, power: 1 | -1 = -1): UnitSymmetryPart => ({
  tensor: spec.name,
  axis: { outer: sizeOf(spec) / (units * spec.shape.at(-1)!), units, inner: spec.shape.at(-1)! },
  power,
});

const MODELS: BenchModel[] = [
  {
    slug: 'mnist-mlp',
    margin: 1,
    split: (card) => mnistSplit(card.training.seed),
    // Dense 128 units: kernel columns, bias, next kernel's rows.
    unitSymmetry: ([kernel, bias, next]) => [outputsOf(kernel!), outputsOf(bias!), inputsOf(next!, 128)],
    wrongKeys: 10_000,
    unmarkedModels: 100,
    ablation: true,
  },
  {
    slug: 'mnist-cnn',
    margin: 1.5,
    calibrationExamples: 2000,
    split: (card) => mnistSplit(card.training.seed),
    // Second convolution's filters: its kernel and bias, and the Dense head's rows they feed.
    unitSymmetry: ([, , kernel, bias, head]) => [
      outputsOf(kernel!),
      outputsOf(bias!),
      inputsOf(head!, kernel!.shape.at(-1)!),
    ],
    wrongKeys: 1_000,
    unmarkedModels: 0,
    ablation: false,
  },
  {
    slug: 'spam-classifier',
    margin: 1.5,
    split: (card) => spamSplit(card.training.seed, card.signature.input.preprocessing as TextPreprocessing),
    // The 128 embedding dimensions: embedding columns, first Dense kernel's rows (pooling is linear).
    unitSymmetry: ([embeddings, dense]) => [outputsOf(embeddings!), inputsOf(dense!, 128)],
    wrongKeys: 1_000,
    unmarkedModels: 0,
    ablation: false,
  },
];

interface TargetCheck {
  model: string;
  target: string;
  measured: string;
  pass: boolean;
}

const checks: TargetCheck[] = [];

function check(model: string, target: string, measured: string, pass: boolean): void {
  checks.push({ model, target, measured, pass });
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

function timed<T>(run: () => T, repeats = 3): { result: T; ms: number } {
  const times: number[] = [];
  let result: T | undefined;
  for (let i = 0; i < repeats; i++) {
    const started = performance.now();
    result = run();
    times.push(performance.now() - started);
  }
  return { result: result!, ms: median(times) };
}

async function predictions(artifact: WeightsArtifact, split: Split): Promise<number[]> {
  const model = await loadModel(artifact);
  try {
    return await predictClasses(model, split.xTest);
  } finally {
    model.dispose();
  }
}

/** Bit errors of each key, decoding `suspect` against the unmarked original. */
function bitErrors(suspect: WeightsArtifact, original: WeightsArtifact, keys: MarkKey[]): number[] {
  return decodeMarks(suspect, original, keys).map((result) => result.totalBits - result.matchedBits);
}

async function fineTune(
  artifact: WeightsArtifact,
  split: Split,
  card: Card,
  options: { epochs: number; learningRate: number },
  random: Random,
): Promise<WeightsArtifact> {
  const model = await loadModel(artifact);
  try {
    await fit(model, split.xTrain, split.yTrain, { ...options, batchSize: card.training.batchSize, random });
    return await saveArtifact(model);
  } finally {
    model.dispose();
  }
}

/** Bit errors of the library's difference decoding and of a blind mark, at the same weight change. */
async function runAblation(
  original: WeightsArtifact,
  split: Split,
  card: Card,
  margin: number,
  random: Random,
  quick: boolean,
): Promise<void> {
  const key = deriveMarkKey(SECRET, 'owner', 'ablation');
  const difference = markArtifact(original, key, { margin });
  const blindMargin = blindMarginFor(original, key, difference.report.relativeChange);
  const blind = markBlind(original, key, blindMargin).artifact;
  const attacks: [string, (marked: WeightsArtifact) => WeightsArtifact[] | Promise<WeightsArtifact[]>][] = [
    ['none', (marked) => [marked]],
    ['uint8 quantization', (marked) => [quantizeArtifact(marked, 'uint8')]],
    ['prune 50%', (marked) => [pruneArtifact(marked, 0.5)]],
    ['prune 70%', (marked) => [pruneArtifact(marked, 0.7)]],
    [
      `Gaussian noise ${NOISE}σ (worst of ${NOISE_DRAWS})`,
      (marked) => Array.from({ length: NOISE_DRAWS }, () => noiseArtifact(marked, NOISE, random)),
    ],
  ];
  if (!quick) {
    attacks.push([
      `fine-tune ${FINE_TUNE.epochs} epochs, Adam ${FINE_TUNE.learningRate}`,
      async (marked) => [await fineTune(marked, split, card, FINE_TUNE, random)],
    ]);
  }
  const rows: Cell[][] = [];
  for (const [attack, apply] of attacks) {
    const differenceErrors = (await apply(difference)).map((s) => bitErrors(s, original, [key])[0]!);
    const noErasureErrors = (await apply(difference)).map((s) =>
      alternativeBitErrors(s, original, key, 'difference, no erasures'),
    );
    const blindErrors = (await apply(blind)).map((s) => alternativeBitErrors(s, original, key, 'blind'));
    rows.push([attack, Math.max(...differenceErrors), Math.max(...noErasureErrors), Math.max(...blindErrors)]);
  }
  printTable(
    `Decoding on (suspect − original) vs on the suspect alone, both marks changing the tensor by ` +
      `${percent(difference.report.relativeChange)} (margins ${margin}σ and ${blindMargin.toFixed(2)}σ; bit errors of ${MARK_BITS})`,
    ['attack', 'difference (library)', 'difference, no erasures', 'suspect alone (blind)'],
    rows,
  );
}

interface AttackRow {
  attack: string;
  suspect: WeightsArtifact;
  /** Worst case over several random draws of the same attack. */
  draws?: WeightsArtifact[];
}

async function runModel(config: BenchModel, quick: boolean): Promise<void> {
  const { slug, margin } = config;
  const dir = path.join(ARTIFACTS, slug);
  const card = JSON.parse(await readFile(path.join(dir, 'card.json'), 'utf8')) as Card;
  const original = await readArtifact(dir);
  const specs = parseModelJson(original.modelJson).weightsManifest.flatMap((group) => group.weights);
  const target = selectMarkTensor(original.modelJson);
  const entriesPerWeight = Math.min(MARK_BITS, Math.ceil((ROW_SUPPORT * MARK_BITS) / target.size));
  const split = config.split(card);
  const random = seededRandom(card.training.seed);
  seedMathRandom(card.training.seed);

  let shaping: InputStatistics | undefined;
  if (config.calibrationExamples) {
    const model = await loadModel(original);
    const features = layerInputs(model, target.denseLayer!, split.xTrain, config.calibrationExamples);
    shaping = inputStatistics(features, config.calibrationExamples);
    model.dispose();
  }
  const baseline = await predictions(original, split);
  const baselineAccuracy = accuracyOf(baseline, split.yTest);
  console.log(`\n## ${slug}\n`);
  console.log(
    `Marked tensor ${target.name} [${target.shape.join('×')}] = ${target.size} weights (${entriesPerWeight} carrier entries per weight); ` +
      `held-out accuracy ${percent(baselineAccuracy)} on ${split.yTest.length} examples ` +
      `(card: ${percent(card.metrics.accuracy)}${Math.abs(baselineAccuracy - card.metrics.accuracy) < 1e-9 ? ', split reproduced' : ' — SPLIT MISMATCH'}).`,
  );
  if (shaping)
    console.log(`Marks shaped with the ${target.denseLayer} inputs of ${shaping.samples} training examples.`);
  const fidelity = async (artifact: WeightsArtifact) => {
    const predicted = await predictions(artifact, split);
    const accuracy = accuracyOf(predicted, split.yTest);
    return { accuracy, drop: baselineAccuracy - accuracy, agreement: agreementOf(predicted, baseline) };
  };

  // Margin sweep: fidelity and the cheap attacks (no training) for the owner mark alone.
  const sweepOwner = deriveMarkKey(SECRET, 'owner', `${slug}-sweep`);
  const sweepAttacker = deriveMarkKey(SECRET, 'owner', `${slug}-sweep-attacker`);
  const sweepRows: Cell[][] = [];
  for (const sweepMargin of SWEEP_MARGINS) {
    const marked = markArtifact(original, sweepOwner, { margin: sweepMargin, shaping });
    const { drop, agreement } = await fidelity(marked);
    const errorsAfter = (suspect: WeightsArtifact) => bitErrors(suspect, original, [sweepOwner])[0]!;
    const noiseErrors = Array.from({ length: NOISE_DRAWS }, () => errorsAfter(noiseArtifact(marked, NOISE, random)));
    sweepRows.push([
      sweepMargin,
      percent(marked.report.relativeChange),
      points(-drop),
      percent(agreement),
      errorsAfter(quantizeArtifact(marked, 'uint8')),
      errorsAfter(pruneArtifact(marked, 0.5)),
      errorsAfter(pruneArtifact(marked, 0.7)),
      Math.max(...noiseErrors),
      errorsAfter(markArtifact(marked, sweepAttacker, { margin: sweepMargin })),
    ]);
  }
  printTable(
    `Margin sweep (owner mark only; bit errors of ${MARK_BITS}; noise: worst of ${NOISE_DRAWS} draws)`,
    [
      'margin (σ)',
      'weight change',
      'Δ accuracy',
      'agreement',
      'uint8',
      'prune 50%',
      'prune 70%',
      `noise ${NOISE}σ`,
      'overwrite',
    ],
    sweepRows,
  );

  // The published copy (owner mark) and a licensee's copy (fingerprint on top, owner mark preserved).
  const owner = deriveMarkKey(SECRET, 'owner', `${slug}-v1`);
  const licensee = deriveMarkKey(SECRET, 'licensee', `${slug}-contract-1`);
  const attacker = deriveMarkKey(SECRET, 'owner', `${slug}-attacker`);
  const keys = [owner, licensee];
  const ownerMarking = timed(() => markArtifact(original, owner, { margin, shaping }));
  const published = ownerMarking.result;
  const licenseeMarking = timed(() =>
    markArtifact(published, licensee, { margin, reference: original, preserve: [owner], shaping }),
  );
  const licensed = licenseeMarking.result;
  const otherLicensee = deriveMarkKey(SECRET, 'licensee', `${slug}-contract-2`);
  const otherLicensed = markArtifact(published, otherLicensee, {
    margin,
    reference: original,
    preserve: [owner],
    shaping,
  });
  const verification = timed(() => decodeMarks(licensed, original, keys));

  for (const [copy, artifact] of [
    ['owner-marked', published],
    ['licensee copy', licensed],
  ] as const) {
    const { accuracy, drop, agreement } = await fidelity(artifact);
    console.log(
      `${copy}: weight change ${percent(artifact.report.relativeChange)} of ${target.name}, ` +
        `accuracy ${percent(accuracy)} (${points(-drop)}), agreement with the original ${percent(agreement)}`,
    );
    check(slug, `fidelity, ${copy}: accuracy drop ≤ 0.5 pp`, points(-drop), drop <= MAX_ACCURACY_DROP);
    check(slug, `fidelity, ${copy}: agreement ≥ 99.5%`, percent(agreement), agreement >= MIN_AGREEMENT);
  }

  const attacks: AttackRow[] = [
    { attack: 'none (licensee copy)', suspect: licensed },
    { attack: 'uint8 quantization', suspect: quantizeArtifact(licensed, 'uint8') },
    { attack: 'float16 quantization', suspect: quantizeArtifact(licensed, 'float16') },
    { attack: 'prune 50%', suspect: pruneArtifact(licensed, 0.5) },
    { attack: 'prune 70%', suspect: pruneArtifact(licensed, 0.7) },
    {
      attack: `Gaussian noise ${NOISE}σ (worst of ${NOISE_DRAWS})`,
      suspect: licensed,
      draws: Array.from({ length: NOISE_DRAWS }, () => noiseArtifact(licensed, NOISE, random)),
    },
    { attack: 'overwrite: second mark, other key', suspect: markArtifact(licensed, attacker, { margin }) },
  ];
  const permuted = permuteAndScaleUnits(licensed, config.unitSymmetry(specs), random);
  const colluded = averageArtifacts(licensed, otherLicensed);
  attacks.push(
    { attack: 'permute + rescale units (×½…×2)', suspect: permuted },
    { attack: 'permute + rescale, then uint8', suspect: quantizeArtifact(permuted, 'uint8') },
    { attack: "collusion: mean with another licensee's copy", suspect: colluded },
  );
  if (!quick) {
    const started = performance.now();
    attacks.push({
      attack: `fine-tune ${FINE_TUNE.epochs} epochs, Adam ${FINE_TUNE.learningRate}`,
      suspect: await fineTune(licensed, split, card, FINE_TUNE, random),
    });
    attacks.push({
      attack: `heavy fine-tune ${HEAVY_FINE_TUNE.epochs} epochs, Adam ${HEAVY_FINE_TUNE.learningRate}`,
      suspect: await fineTune(licensed, split, card, HEAVY_FINE_TUNE, random),
    });
    const teacher = await loadModel(licensed);
    const softLabels = predictProbabilities(teacher, split.xTrain);
    teacher.dispose();
    const student = await freshModel(original);
    await fit(student, split.xTrain, softLabels, {
      epochs: card.training.epochs,
      learningRate: 1e-3,
      batchSize: card.training.batchSize,
      random,
    });
    softLabels.dispose();
    attacks.push({
      attack: `distillation: fresh student, ${card.training.epochs} epochs on soft labels`,
      suspect: await saveArtifact(student),
    });
    student.dispose();
    console.log(`(training attacks took ${seconds(performance.now() - started)})`);
  }

  const attackRows: Cell[][] = [];
  const errorsByAttack = new Map<string, number[]>();
  for (const { attack, suspect, draws } of attacks) {
    const suspects = draws ?? [suspect];
    const errors = suspects.map((s) => bitErrors(s, original, keys));
    const worst = keys.map((_, k) => Math.max(...errors.map((e) => e[k]!)));
    errorsByAttack.set(attack, worst);
    const worstSuspect = suspects[errors.findIndex((e) => Math.max(...e) === Math.max(...worst))]!;
    const verdicts = decide(decodeMarks(worstSuspect, original, keys), keys.length);
    const { accuracy, drop } = await fidelity(worstSuspect);
    attackRows.push([
      attack,
      percent(accuracy),
      points(-drop),
      worst[0]!,
      worst[1]!,
      verdicts.map((v) => v.verdict).join(' / '),
    ]);
  }
  printTable(
    `Attacks on a licensee copy at margin ${margin}σ (bit errors of ${MARK_BITS}; verdicts owner / licensee, 2 keys tried)`,
    ['attack', 'accuracy', 'Δ accuracy', 'owner errors', 'licensee errors', 'verdicts'],
    attackRows,
  );
  console.log(
    `Collusion: the other licensee's fingerprint decodes from the mean copy with ` +
      `${bitErrors(colluded, original, [otherLicensee])[0]} bit errors.`,
  );
  const errorCheck = (attack: string, label: string, maxFraction: number) => {
    const worst = errorsByAttack.get(attack);
    if (!worst) return;
    const errors = Math.max(...worst);
    const limit = Math.floor(maxFraction * MARK_BITS);
    check(slug, `${label}: ≤ ${limit} bit errors`, `${errors} (${percent(errors / MARK_BITS, 1)})`, errors <= limit);
  };
  errorCheck('none (licensee copy)', 'clean', 0);
  errorCheck('uint8 quantization', 'uint8', 0);
  errorCheck('float16 quantization', 'float16', 0);
  errorCheck('prune 50%', 'prune 50%', 0);
  errorCheck('overwrite: second mark, other key', 'overwrite', 0);
  errorCheck('prune 70%', 'prune 70%', MAX_ERRORS.prune70);
  errorCheck(`Gaussian noise ${NOISE}σ (worst of ${NOISE_DRAWS})`, `noise ${NOISE}σ`, MAX_ERRORS.noise);
  errorCheck(
    `fine-tune ${FINE_TUNE.epochs} epochs, Adam ${FINE_TUNE.learningRate}`,
    'fine-tune 10 epochs',
    MAX_ERRORS.fineTune,
  );
  if (config.ablation) await runAblation(original, split, card, margin, random, quick);
  const permutedVerdicts = decide(decodeMarks(permuted, original, keys), keys.length).map((v) => v.verdict);
  check(
    slug,
    'permute + rescale: both MATCH',
    permutedVerdicts.join(' / '),
    permutedVerdicts.every((v) => v === 'MATCH'),
  );

  // False positives: wrong keys on the licensee copy, and unmarked models trained independently.
  const wrongKeys = Array.from({ length: config.wrongKeys }, (_, i) =>
    deriveMarkKey(SECRET, 'licensee', `${slug}-wrong-${i}`),
  );
  const wrongStarted = performance.now();
  const wrongMatched = decodeMarks(licensed, original, wrongKeys).map((r) => r.matchedBits);
  const wrongMs = performance.now() - wrongStarted;
  const falsePositiveRows: Cell[][] = [
    [
      `wrong keys on the licensee copy`,
      wrongKeys.length,
      wrongMatched.filter((m) => m >= SINGLE_KEY_THRESHOLD).length,
      Math.max(...wrongMatched),
      (wrongMatched.reduce((a, b) => a + b, 0) / wrongMatched.length).toFixed(1),
    ],
  ];
  let unmarkedMatches = 0;
  if (!quick && config.unmarkedModels > 0) {
    const matched: number[] = [];
    for (let i = 0; i < config.unmarkedModels; i++) {
      seedMathRandom(card.training.seed + 1 + i); // a different initialisation and dropout stream per model
      const subset = shuffle([...split.yTrain.keys()], random).slice(0, UNMARKED.examples);
      const indices = tf.tensor1d(subset, 'int32');
      const x = tf.gather(split.xTrain, indices);
      const model = await freshModel(original);
      await fit(
        model,
        x,
        subset.map((j) => split.yTrain[j]!),
        { ...UNMARKED, learningRate: 1e-3, batchSize: 32, random },
      );
      matched.push(...decodeMarks(await saveArtifact(model), original, keys).map((r) => r.matchedBits));
      tf.dispose([indices, x]);
      model.dispose();
    }
    unmarkedMatches = matched.filter((m) => m >= SINGLE_KEY_THRESHOLD).length;
    falsePositiveRows.push([
      `independently trained unmarked models × 2 keys`,
      matched.length,
      unmarkedMatches,
      Math.max(...matched),
      (matched.reduce((a, b) => a + b, 0) / matched.length).toFixed(1),
    ]);
  }
  printTable(
    `False positives (MATCH: ≥ ${SINGLE_KEY_THRESHOLD} bits, the single-key threshold; expected mean ${MARK_BITS / 2})`,
    ['suspect', 'decodes', 'MATCH', 'max matched', 'mean matched'],
    falsePositiveRows,
  );
  const wrongKeyMatches = falsePositiveRows[0]![2] as number;
  check(slug, `wrong keys (${wrongKeys.length}): 0 MATCH`, String(wrongKeyMatches), wrongKeyMatches === 0);
  if (!quick && config.unmarkedModels > 0) {
    check(slug, `unmarked models (${config.unmarkedModels}): 0 MATCH`, String(unmarkedMatches), unmarkedMatches === 0);
  }

  console.log(
    `\nCost: owner mark ${seconds(ownerMarking.ms)}, licensee mark ${seconds(licenseeMarking.ms)}, ` +
      `verification (alignment + 2 keys) ${seconds(verification.ms)}, ${seconds(wrongMs / wrongKeys.length)} per further key ` +
      `(medians on this machine, model already in memory)`,
  );
  disposeSplit(split);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { only: { type: 'string' }, quick: { type: 'boolean', default: false } } });
  const slugs = values.only?.split(',').map((s) => s.trim()) ?? MODELS.map((m) => m.slug);
  const unknown = slugs.filter((slug) => !MODELS.some((m) => m.slug === slug));
  if (unknown.length > 0)
    throw new Error(`unknown model(s) ${unknown.join(', ')}; choose from ${MODELS.map((m) => m.slug).join(', ')}`);
  const backend = await initTrainingBackend();
  const started = performance.now();
  console.log(`# Watermark bench (tfjs ${backend} backend${values.quick ? ', --quick: no training attacks' : ''})`);
  for (const config of MODELS.filter((m) => slugs.includes(m.slug))) await runModel(config, values.quick);
  printTable(
    'Targets',
    ['model', 'target', 'measured', 'result'],
    checks.map((c) => [c.model, c.target, c.measured, c.pass ? 'PASS' : 'FAIL']),
  );
  console.log(`\nTotal ${seconds(performance.now() - started)}`);
  if (checks.some((c) => !c.pass)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
