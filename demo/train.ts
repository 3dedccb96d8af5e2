// Trains the demo models and writes them to demo/artifacts/<slug>/:
//   model.json + model.weights.bin   the tfjs layers model (weightsManifest paths ["model.weights.bin"])
//   card.json                        name, slug, task, labels, signature, metrics, model card, provenance
//   eval.json                        held-out examples for re-measuring accuracy (src/evaluation/eval-set.ts)
//
// Usage: tsx demo/train.ts [--cnn] [--only mnist-mlp,mnist-cnn,spam-classifier] [--seed 42] [--out dir]
//   default: mnist-mlp and spam-classifier; --cnn adds mnist-cnn; --only picks models by slug.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { initTrainingBackend } from './backend.js';
import { trainMnist } from './mnist.js';
import type { ModelReport, RunContext } from './pipeline.js';
import { seedMathRandom } from './random.js';
import { trainSpamClassifier } from './spam.js';

const TRAINERS: Record<string, (context: RunContext) => Promise<ModelReport>> = {
  'mnist-mlp': (context) => trainMnist('mlp', context),
  'mnist-cnn': (context) => trainMnist('cnn', context),
  'spam-classifier': trainSpamClassifier,
};
const DEFAULT_MODELS = ['mnist-mlp', 'spam-classifier'];
const DEFAULT_OUT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');

function selectedModels(cnn: boolean, only: string | undefined): string[] {
  if (only === undefined) return cnn ? [...DEFAULT_MODELS, 'mnist-cnn'] : DEFAULT_MODELS;
  const slugs = only.split(',').map((slug) => slug.trim());
  const unknown = slugs.find((slug) => !(slug in TRAINERS));
  if (unknown !== undefined)
    throw new Error(`unknown model "${unknown}"; choose from ${Object.keys(TRAINERS).join(', ')}`);
  return slugs;
}

function printReport(report: ModelReport, totalSeconds: number): void {
  const { metrics } = report;
  const percent = (value: number) => `${(100 * value).toFixed(2)}%`;
  console.log(
    `\n${report.slug}: held-out accuracy ${percent(metrics.accuracy)}, macro-F1 ${metrics.macroF1.toFixed(4)} on ${metrics.samples} examples`,
  );
  console.log(`  training ${report.trainingSeconds.toFixed(1)} s, total ${totalSeconds.toFixed(1)} s`);
  console.log(`  eval.json: ${percent(report.evalSetAccuracy)} accuracy of the saved model on its stored examples`);
  console.log(`  weights SHA-256 ${report.weightsSha256}`);
  const width = Math.max(
    5,
    ...metrics.labels.map((l) => l.length),
    ...metrics.confusionMatrix.flat().map((n) => String(n).length),
  );
  const cell = (value: string | number) => String(value).padStart(width);
  console.log(`  confusion matrix (rows: true, columns: predicted)`);
  console.log(`  ${cell('')} ${metrics.labels.map(cell).join(' ')}`);
  metrics.confusionMatrix.forEach((row, i) => console.log(`  ${cell(metrics.labels[i]!)} ${row.map(cell).join(' ')}`));
  console.log(
    `  per class: ${metrics.perClass.map((c) => `${c.label} P ${c.precision.toFixed(3)} R ${c.recall.toFixed(3)} F1 ${c.f1.toFixed(3)}`).join('; ')}`,
  );
  console.log(
    `  files in ${path.relative(process.cwd(), report.dir)}: ${report.files.map((f) => `${f.file} ${(f.bytes / 1024).toFixed(1)} KiB`).join(', ')}`,
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cnn: { type: 'boolean', default: false },
      only: { type: 'string' },
      seed: { type: 'string', default: '42' },
      out: { type: 'string', default: DEFAULT_OUT },
    },
  });
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, not "${values.seed}"`);
  const models = selectedModels(values.cnn, values.only);

  const backend = await initTrainingBackend();
  console.log(`Training ${models.join(', ')} on the tfjs ${backend} backend (seed ${seed})`);
  const context: RunContext = { seed, backend, outDir: path.resolve(values.out) };
  for (const slug of models) {
    const started = performance.now();
    seedMathRandom(seed); // per model, so a model's result does not depend on which others ran before it
    const report = await TRAINERS[slug]!(context);
    printReport(report, (performance.now() - started) / 1000);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
