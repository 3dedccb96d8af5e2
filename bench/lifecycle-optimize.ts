// Optimised variants of the demo models, measured as publishing measures them (src/lifecycle): each variant
// derived in the optimizer's worker, then parent and derived run through a real inference engine on the
// model's held-out eval.json. Prints the targets with their measurements (exit 1 if one fails),
// then the full report of every variant, and how long the event loop was held meanwhile.
//
// Usage: tsx bench/lifecycle-optimize.ts [--artifacts dir]
//   dir: what `npm run demo:train` writes (default demo/artifacts): every model there with an eval.json is
//   measured (add the CNN with `npm run demo:train -- --cnn`). Without a mnist-mlp there, the tests' cached
//   demo MLP is used (trained once into the OS temp folder).
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { setTimeout } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config.js';
import { decodeEvalSet } from '../src/evaluation/eval-set.js';
import { InferenceEngine, type TensorInput } from '../src/inference/engine.js';
import type { OptimizationOptions } from '../src/lifecycle/optimization.js';
import {
  inMemoryRef,
  measureOptimization,
  type LabelledEvaluation,
  type OptimizationReport,
} from '../src/lifecycle/optimization-report.js';
import { ArtifactOptimizer } from '../src/lifecycle/optimizer.js';
import type { WeightsArtifact } from '../src/watermark/artifact.js';
import { demoArtifacts } from '../test/support/demo-artifacts.js';
import { percent, points, printTable, type Cell } from './watermark/report.js';

const DEMO_ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'demo', 'artifacts');

const VARIANTS: { name: string; options: OptimizationOptions }[] = [
  { name: 'UINT8', options: { quantize: 'UINT8', pruneSparsity: null } },
  { name: 'FLOAT16', options: { quantize: 'FLOAT16', pruneSparsity: null } },
  { name: 'prune 50%', options: { quantize: null, pruneSparsity: 0.5 } },
  { name: 'prune 50% + UINT8', options: { quantize: 'UINT8', pruneSparsity: 0.5 } },
];

/** The targets, on the MNIST MLP: [variant, what, check, measured value as printed]. */
const TARGETS: [string, string, (r: OptimizationReport) => boolean, (r: OptimizationReport) => string][] = [
  ['UINT8', '≥ 3.5× smaller', (r) => r.sizeRatio >= 3.5, (r) => `${r.sizeRatio.toFixed(2)}×`],
  ['UINT8', '≤ 1 pp accuracy drop', (r) => r.accuracyDrop <= 0.01 + 1e-9, (r) => points(-r.accuracyDrop)],
  [
    'FLOAT16',
    '2× smaller (weights)',
    (r) => r.weightsRatio >= 2,
    (r) => `${r.weightsRatio.toFixed(2)}× (artifact ${r.sizeRatio.toFixed(3)}×)`,
  ],
  ['FLOAT16', '≤ 0.1 pp accuracy drop', (r) => r.accuracyDrop <= 0.001 + 1e-9, (r) => points(-r.accuracyDrop)],
  ['prune 50%', '≤ 1 pp accuracy drop', (r) => r.accuracyDrop <= 0.01 + 1e-9, (r) => points(-r.accuracyDrop)],
];

async function modelDirs(dir: string): Promise<string[]> {
  const found = existsSync(dir)
    ? (await readdir(dir)).filter((name) => existsSync(path.join(dir, name, 'eval.json'))).sort()
    : [];
  const dirs = found.map((name) => path.join(dir, name));
  if (!found.includes('mnist-mlp')) dirs.unshift(path.join(await demoArtifacts(), 'mnist-mlp'));
  return dirs;
}

async function readModel(dir: string): Promise<{ artifact: WeightsArtifact; evaluation: LabelledEvaluation }> {
  const modelJson = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as {
    weightsManifest: { paths: string[] }[];
  };
  const files = modelJson.weightsManifest.flatMap((group) => group.paths);
  const weights = Buffer.concat(await Promise.all(files.map((file) => readFile(path.join(dir, file)))));
  const evalSet = decodeEvalSet(JSON.parse(await readFile(path.join(dir, 'eval.json'), 'utf8')));
  return {
    artifact: { modelJson, weights },
    evaluation: {
      tensor: { data: evalSet.inputs, shape: [evalSet.count, ...evalSet.shape], dtype: evalSet.dtype } as TensorInput,
      labels: evalSet.targets,
    },
  };
}

const delays = (histogram: IntervalHistogram) =>
  `max ${(histogram.max / 1e6).toFixed(1)} ms, p99 ${(histogram.percentile(99) / 1e6).toFixed(1)} ms`;
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const ms = (value: number) => `${value.toFixed(value < 10 ? 2 : 0)} ms`;

function printReport(model: string, reports: { name: string; report: OptimizationReport; deriveMs: number }[]): void {
  const [first] = reports;
  if (!first) return;
  const side = (label: string, r: OptimizationReport['parent'], extra: Cell[]): Cell[] => [
    label,
    kb(r.bytes),
    kb(r.gzipBytes),
    percent(r.accuracy),
    r.macroF1.toFixed(4),
    ms(r.coldLoadMs),
    ms(r.p50Batch1Ms),
    ms(r.p50Batch64Ms),
    ...extra,
  ];
  printTable(
    `${model}: parent vs derived (${first.report.evaluationSamples} held-out examples)`,
    ['artifact', 'size', 'gzip', 'accuracy', 'macro-F1', 'cold load', 'p50 b1', 'p50 b64', 'agreement', 'derive'],
    [
      side('parent', first.report.parent, ['', '']),
      ...reports.map(({ name, report, deriveMs }) =>
        side(name, report.derived, [percent(report.agreement), ms(deriveMs)]),
      ),
    ],
  );
  printTable(
    `${model}: what each variant saves and costs`,
    ['variant', 'size ratio', 'weights ratio', 'gzip ratio', 'accuracy', 'macro-F1'],
    reports.map(({ name, report }) => [
      name,
      `${report.sizeRatio.toFixed(2)}×`,
      `${report.weightsRatio.toFixed(2)}×`,
      `${report.gzipRatio.toFixed(2)}×`,
      points(-report.accuracyDrop),
      (-report.macroF1Drop).toFixed(4),
    ]),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { artifacts: { type: 'string', default: DEMO_ARTIFACTS } } });
  const inference = parseConfig(process.env).inference;
  const artifactDir = await mkdtemp(path.join(os.tmpdir(), 'modelmarket-bench-optimize-'));
  const engine = await InferenceEngine.start({ ...inference, artifactDir });
  const optimizer = new ArtifactOptimizer(inference.maxParameters);
  const eventLoop = monitorEventLoopDelay({ resolution: 5 });
  // The same monitor over an idle wait: on a busy machine the scheduler alone delays the loop this much.
  const idle = monitorEventLoopDelay({ resolution: 5 });
  idle.enable();
  await setTimeout(3000);
  idle.disable();
  let failed = false;
  try {
    console.log(
      `inference backend: ${engine.backend}, ${inference.workers} worker(s); load average ${os.loadavg()[0]!.toFixed(1)} on ${os.availableParallelism()} cores`,
    );
    // The optimizer's worker starts on first use; that start is not part of any derivation.
    await optimizer.optimize(await readModel((await modelDirs(values.artifacts))[0]!).then((m) => m.artifact), {
      quantize: 'FLOAT16',
    });
    for (const dir of await modelDirs(values.artifacts)) {
      const model = path.basename(dir);
      const { artifact, evaluation } = await readModel(dir);
      const parentRef = inMemoryRef(artifact);
      const reports: { name: string; report: OptimizationReport; deriveMs: number }[] = [];
      eventLoop.enable();
      for (const { name, options } of VARIANTS) {
        const startedAt = performance.now();
        const derived = await optimizer.optimize(artifact, options);
        const deriveMs = performance.now() - startedAt;
        const report = await measureOptimization(engine, parentRef, inMemoryRef(derived), evaluation);
        reports.push({ name, report, deriveMs });
      }
      eventLoop.disable();
      if (model === 'mnist-mlp') {
        const rows = TARGETS.map(([variant, target, passes, measured]): Cell[] => {
          const report = reports.find((r) => r.name === variant)!.report;
          const ok = passes(report);
          failed ||= !ok;
          return [variant, target, measured(report), ok ? 'PASS' : 'FAIL'];
        });
        printTable('Targets (mnist-mlp)', ['variant', 'target', 'measured', ''], rows);
      }
      printReport(model, reports);
    }
    console.log(`\nevent loop while deriving and measuring: ${delays(eventLoop)}; idle for 3 s: ${delays(idle)}`);
  } finally {
    await Promise.all([engine.close(), optimizer.close()]);
    await rm(artifactDir, { recursive: true, force: true });
  }
  if (failed) process.exitCode = 1;
}

await main();
