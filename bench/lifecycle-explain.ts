// `npm run bench:lifecycle:explain`: explanation latency against the targets, over real HTTP to a real
// server in this process (so that its event loop's delay is measured while it explains):
//   Kernel SHAP, text   the demo spam classifier, one held-out message (≥ 10 tokens) per call, 256 coalitions
//   occlusion, MNIST    the demo MNIST MLP, one held-out digit per call (49 patches of 4×4 pixels)
// Prints each target beside its measurement. Not a test: it prints numbers.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { explained, publishedDemo } from '../test/explanations/support.js';
import { signUp } from '../test/support/fixtures.js';
import { startTestServer } from '../test/support/server.js';
import { openBenchDatabases } from './support.js';

const CALLS = Number(process.env.BENCH_EXPLAIN_CALLS ?? 30);
const WARMUP_CALLS = 3;

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

async function main(): Promise<void> {
  const databases = await openBenchDatabases();
  const server = await startTestServer({ DATABASE_URL: await databases.create('explain'), LOG_LEVEL: 'warn' });
  try {
    const owner = await signUp(server, { role: 'OWNER' });
    const auth = { token: owner.token };
    const [spam, mnist] = [
      await publishedDemo(server, auth, 'spam-classifier'),
      await publishedDemo(server, auth, 'mnist-mlp'),
    ];
    const messages: number[][] = [];
    for (let i = 0; i < spam.evalSet.count && messages.length < CALLS + WARMUP_CALLS; i++) {
      const { inputs, exampleSize } = spam.evalSet;
      const ids = Array.from(inputs.subarray(i * exampleSize, (i + 1) * exampleSize));
      if (ids.filter((id) => id !== 0).length >= 10) messages.push(ids);
    }
    const digits = Array.from({ length: CALLS + WARMUP_CALLS }, (_, i) => {
      const { inputs, exampleSize } = mnist.evalSet;
      const flat = inputs.subarray(i * exampleSize, (i + 1) * exampleSize);
      return Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, c) => [flat[r * 28 + c]!]));
    });

    const loop = monitorEventLoopDelay({ resolution: 5 });
    const run = async (label: string, inputs: unknown[], input: Record<string, unknown>) => {
      const latencies: number[] = [];
      const tokens: number[] = [];
      for (const [i, instance] of inputs.entries()) {
        if (i === WARMUP_CALLS) loop.reset();
        const started = performance.now();
        const explanation = await explained(server, auth, { ...input, inputs: [instance] });
        if (i >= WARMUP_CALLS) latencies.push(performance.now() - started);
        tokens.push(explanation.instances[0]!.values.length);
      }
      latencies.sort((a, b) => a - b);
      return {
        label,
        p50: percentile(latencies, 0.5),
        p95: percentile(latencies, 0.95),
        loopMaxMs: loop.max / 1e6,
        loopP99Ms: loop.percentile(99) / 1e6,
        features: tokens.reduce((a, b) => a + b, 0) / tokens.length,
      };
    };
    loop.enable();
    const shap = await run('Kernel SHAP, spam text, 256 coalitions', messages, {
      model: spam.slug,
      method: 'KERNEL_SHAP',
      samples: 256,
    });
    const occlusion = await run('occlusion, MNIST MLP, 4×4 patches', digits, {
      model: mnist.slug,
      method: 'OCCLUSION',
    });
    loop.disable();

    const ms = (value: number) => `${value.toFixed(1)} ms`;
    console.log(`explain benchmarks: ${CALLS} calls of one instance each (after ${WARMUP_CALLS} warm-up calls)`);
    console.log(
      `  ${shap.label}: p50 ${ms(shap.p50)} (target < 1000 ms: ${shap.p50 < 1000 ? 'met' : 'MISSED'}), p95 ${ms(shap.p95)}, ${shap.features.toFixed(0)} tokens per message on average`,
    );
    console.log(`  ${occlusion.label}: p50 ${ms(occlusion.p50)}, p95 ${ms(occlusion.p95)}`);
    for (const result of [shap, occlusion]) {
      console.log(`  event loop while ${result.label}: max delay ${ms(result.loopMaxMs)}, p99 ${ms(result.loopP99Ms)}`);
    }
  } finally {
    await server.close();
    await databases.close();
  }
}

await main();
