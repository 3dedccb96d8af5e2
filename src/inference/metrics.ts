import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const METRIC_NAMES = [
  'mm_predict_batch_size',
  'mm_inference_seconds',
  'mm_inference_queue_depth',
  'mm_model_cache_hits_total',
  'mm_model_cache_misses_total',
  'mm_model_cache_evictions_total',
  'mm_inference_backend_info',
  'mm_inference_worker_restarts_total',
] as const;

/**
 * The engine's Prometheus metrics. They register only on the registry the caller passes
 * (never the global one), so engines on separate registries do not clash; without a
 * registry they are still updated but not exported.
 */
export class InferenceMetrics {
  readonly batchSize: Histogram;
  readonly inferenceSeconds: Histogram;
  readonly cacheHits: Counter;
  readonly cacheMisses: Counter;
  readonly cacheEvictions: Counter;
  readonly workerRestarts: Counter;
  private readonly queueDepth: Gauge;
  private readonly backendInfo: Gauge<'backend'>;

  constructor(
    private readonly registry: Registry | undefined,
    readQueueDepth: () => number,
  ) {
    const registers = registry ? [registry] : [];
    this.batchSize = new Histogram({
      name: 'mm_predict_batch_size',
      help: 'Instances per batch dispatched to an inference worker',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.inferenceSeconds = new Histogram({
      name: 'mm_inference_seconds',
      help: 'Worker time per dispatched batch, including a model load on a cache miss',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'mm_inference_queue_depth',
      help: 'Instances admitted but not yet dispatched to a worker',
      registers,
      collect() {
        this.set(readQueueDepth());
      },
    });
    this.cacheHits = new Counter({
      name: 'mm_model_cache_hits_total',
      help: 'Worker tasks that found their model already loaded',
      registers,
    });
    this.cacheMisses = new Counter({
      name: 'mm_model_cache_misses_total',
      help: 'Worker tasks that had to load their model from the artifact cache',
      registers,
    });
    this.cacheEvictions = new Counter({
      name: 'mm_model_cache_evictions_total',
      help: 'Loaded models evicted from worker caches to stay within cacheBytes',
      registers,
    });
    this.workerRestarts = new Counter({
      name: 'mm_inference_worker_restarts_total',
      help: 'Inference workers replaced because they died or their tfjs runtime broke',
      registers,
    });
    this.backendInfo = new Gauge({
      name: 'mm_inference_backend_info',
      help: 'The tfjs backend the inference workers run (value is always 1)',
      labelNames: ['backend'],
      registers,
    });
  }

  setBackend(backend: string): void {
    this.backendInfo.set({ backend }, 1);
  }

  recordCacheUse(report: { cacheHit: boolean; evictions: number }): void {
    (report.cacheHit ? this.cacheHits : this.cacheMisses).inc();
    if (report.evictions > 0) this.cacheEvictions.inc(report.evictions);
  }

  /** Removes these metrics from the registry so a later engine can register its own. */
  unregister(): void {
    for (const name of METRIC_NAMES) this.registry?.removeSingleMetric(name);
  }
}
