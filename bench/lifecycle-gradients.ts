/**
 * Gradient attributions in the inference engine (`npm run bench:lifecycle:gradients`): integrated gradients
 * (32 steps) on the demo MNIST MLP at batch 1, p50/p95 over 60 held-out digits against the target
 * (p50 < 150 ms), and the event loop's largest delay meanwhile; then, for scale, batch 8, gradient × input, and
 * the demo CNN's architecture (untrained: latency only). Not a test.
 *
 * The MLP is the demo's, trained once and cached (test/support/demo-artifacts.ts; the first run trains it, about
 * two minutes). Calls run one after another from one client, on an engine of INFERENCE_WORKERS (default 2) workers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildCnn } from '../demo/models.js';
import { InferenceEngine, type AttributionRequest, type ModelRef } from '../src/inference/engine.js';
import { demoMlp } from '../test/support/demo-artifacts.js';
import { modelRef, toArtifact } from '../test/inference/models.js';

const RUNS = 60;
const WARMUP_RUNS = 5;
const PIXELS = 28 * 28;
const TARGET_P50_MS = 150;
/** The event loop counts as responsive while no callback waits longer than this. */
const TARGET_LOOP_DELAY_MS = 50;

interface Measured {
  label: string;
  p50Ms: number;
  p95Ms: number;
  maxLoopDelayMs: number;
}

/** The largest event-loop delay of this process doing nothing for `ms`: what the machine alone costs. */
async function idleLoopDelayMs(ms: number): Promise<number> {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  histogram.enable();
  await sleep(ms);
  histogram.disable();
  return histogram.max / 1e6;
}

function percentile(sortedMs: number[], fraction: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.floor(sortedMs.length * fraction))]!;
}

async function measure(
  engine: InferenceEngine,
  label: string,
  model: ModelRef,
  digits: Float32Array,
  instances: number,
  request: (first: number) => AttributionRequest,
): Promise<Measured> {
  const batch = (first: number) => ({
    data: digits.slice(first * PIXELS, (first + instances) * PIXELS),
    shape: [instances, 28, 28, 1],
    dtype: 'float32' as const,
  });
  for (let run = 0; run < WARMUP_RUNS; run += 1) await engine.attributions(model, batch(0), request(0));
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  const latenciesMs: number[] = [];
  histogram.enable();
  for (let run = 0; run < RUNS; run += 1) {
    const first = (run * instances) % (digits.length / PIXELS - instances);
    const started = performance.now();
    await engine.attributions(model, batch(first), request(first));
    latenciesMs.push(performance.now() - started);
  }
  histogram.disable();
  latenciesMs.sort((a, b) => a - b);
  return {
    label,
    p50Ms: percentile(latenciesMs, 0.5),
    p95Ms: percentile(latenciesMs, 0.95),
    maxLoopDelayMs: histogram.max / 1e6,
  };
}

async function main(): Promise<void> {
  const { artifact, evalSet } = await demoMlp();
  const digits = evalSet.inputs as Float32Array;
  const mlp = modelRef(artifact);
  const cnnModel = buildCnn([28, 28, 1], 10);
  const cnn = modelRef(await toArtifact(cnnModel));
  cnnModel.dispose();
  const artifactDir = await mkdtemp(path.join(os.tmpdir(), 'mm-bench-gradients-'));
  const workers = Number(process.env.INFERENCE_WORKERS ?? 2);
  const engine = await InferenceEngine.start({
    workers,
    maxBatchSize: 64,
    maxWaitMs: 2,
    maxQueueDepth: 4096,
    cacheBytes: 64 * 1024 * 1024,
    artifactDir,
    batching: true,
  });
  try {
    // Each digit's own label as the target: what an explanation of a correct prediction attributes.
    const targets = (first: number, instances: number) => evalSet.targets.slice(first, first + instances);
    const ig = (instances: number) => (first: number) => ({
      method: 'INTEGRATED_GRADIENTS' as const,
      targets: targets(first, instances),
      steps: 32,
    });
    const [load1] = os.loadavg();
    console.log(
      `# Gradient attributions (tfjs ${engine.backend} backend, ${workers} workers, ${RUNS} runs each; ` +
        `${os.cpus().length} cores, load average ${load1!.toFixed(1)})\n`,
    );
    const idleDelayMs = await idleLoopDelayMs(2000);
    const headline = await measure(engine, 'MLP, integrated gradients 32 steps, batch 1', mlp, digits, 1, ig(1));
    const rows = [
      headline,
      await measure(engine, 'MLP, integrated gradients 32 steps, batch 8', mlp, digits, 8, ig(8)),
      await measure(engine, 'MLP, gradient × input, batch 1', mlp, digits, 1, (first) => ({
        method: 'GRADIENT_X_INPUT',
        targets: targets(first, 1),
      })),
      await measure(engine, 'CNN (demo architecture), integrated gradients 32 steps, batch 1', cnn, digits, 1, ig(1)),
    ];
    console.table(
      rows.map((row) => ({
        case: row.label,
        'p50 ms': row.p50Ms.toFixed(1),
        'p95 ms': row.p95Ms.toFixed(1),
        'event-loop max delay ms': row.maxLoopDelayMs.toFixed(1),
      })),
    );
    console.log(`(an idle event loop in this process, 2 s: max delay ${idleDelayMs.toFixed(1)} ms)`);
    console.log('\nTargets');
    console.table([
      {
        target: `integrated gradients (32 steps) on the MNIST MLP, batch 1: p50 < ${TARGET_P50_MS} ms`,
        measured: `p50 ${headline.p50Ms.toFixed(1)} ms (p95 ${headline.p95Ms.toFixed(1)} ms)`,
        result: headline.p50Ms < TARGET_P50_MS ? 'PASS' : 'FAIL',
      },
      {
        target: `the event loop stays responsive meanwhile (max delay < ${TARGET_LOOP_DELAY_MS} ms)`,
        measured: `max ${headline.maxLoopDelayMs.toFixed(1)} ms (idle: ${idleDelayMs.toFixed(1)} ms)`,
        result: headline.maxLoopDelayMs < TARGET_LOOP_DELAY_MS ? 'PASS' : 'FAIL',
      },
    ]);
  } finally {
    await engine.close();
    await rm(artifactDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
