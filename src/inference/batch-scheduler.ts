import { InferenceClosedError, InferenceInputError, InferenceOverloadedError } from './errors.js';

export interface BatchSchedulerOptions {
  /** Batches that can execute at the same time (one per worker). */
  slots: number;
  maxBatchSize: number;
  maxWaitMs: number;
  maxQueueDepth: number;
  /** When false every request is dispatched on its own. */
  batching: boolean;
}

/**
 * Dispatched batches allowed per slot: one running plus one staged in the pool's queue,
 * so a worker starts its next batch without a round trip through the main thread.
 */
const PIPELINE_DEPTH_PER_SLOT = 2;

interface QueuedRequest<TRequest, TResult> {
  request: TRequest;
  instances: number;
  enqueuedAt: number;
  resolve(result: TResult): void;
  reject(error: unknown): void;
}

/** A job that runs as a batch of its own once a slot is free (see `runAlone`). */
interface AloneJob {
  weight: number;
  enqueuedAt: number;
  start(): void;
}

interface RequestGroup<TRequest, TResult> {
  requests: QueuedRequest<TRequest, TResult>[];
  instances: number;
}

/**
 * Dynamic micro-batching over a fixed number of execution slots.
 *
 * Requests are grouped by a caller-chosen key (model + input dtype + row shape: only
 * requests that can be stacked into one tensor share a group). Dispatch policy:
 * - A slot is free: the group with the oldest waiting request is dispatched at once
 *   (after one event-loop turn, so requests arriving together still share a batch),
 *   split evenly over the free slots so idle workers share the work.
 * - All slots are busy: groups keep filling; a group is staged behind the running batches
 *   once it holds `maxBatchSize` instances or its oldest request has waited `maxWaitMs`.
 *   Otherwise it dispatches when a slot frees.
 * Batches take whole requests in arrival order up to `maxBatchSize` instances. A request
 * with more instances than that is never split: it runs as a batch of its own. A batch of
 * several requests that fails with an `InferenceInputError` is bisected so that only the
 * requests at fault fail.
 *
 * Admission: `maxQueueDepth` bounds the instances admitted but not yet dispatched
 * (including those still waiting for `prepare`, and the weight of `runAlone` jobs still
 * waiting for a slot); past it `submit` and `runAlone` reject at once.
 */
export class BatchScheduler<TRequest, TResult> {
  private readonly groups = new Map<string, RequestGroup<TRequest, TResult>>();
  private readonly aloneJobs: AloneJob[] = [];
  private waitingInstances = 0;
  private inFlightBatches = 0;
  private pumpScheduled = false;
  private stagingTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly options: BatchSchedulerOptions,
    private readonly runBatch: (requests: TRequest[]) => Promise<TResult[]>,
  ) {}

  get queueDepth(): number {
    return this.waitingInstances;
  }

  get inFlight(): number {
    return this.inFlightBatches;
  }

  /**
   * Admits a request of `instances` rows, awaits `prepare` (e.g. fetching the model
   * artifact), then queues it. Resolves with this request's own result.
   */
  submit(groupKey: string, instances: number, request: TRequest, prepare: () => Promise<void>): Promise<TResult> {
    try {
      this.admit(instances, 'instances');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.enqueueWhenPrepared(groupKey, instances, request, prepare);
  }

  /**
   * Runs `work` as a batch of its own (a job too heavy to merge: gradient attributions), admitted like
   * `submit`: `weight` (the instances its work stands for) counts against `maxQueueDepth` until it starts,
   * past it this rejects at once. It starts only on a free slot (never staged behind a running batch: it is
   * long), in arrival order with the groups: groups that arrived after it wait, so it cannot starve.
   */
  async runAlone<T>(weight: number, work: () => Promise<T>): Promise<T> {
    this.admit(weight, 'points');
    await new Promise<void>((start) => {
      this.aloneJobs.push({ weight, enqueuedAt: performance.now(), start });
      this.schedulePump();
    });
    try {
      return await work();
    } finally {
      this.inFlightBatches -= 1;
      this.onSlotFreed();
    }
  }

  /** Counts `weight` as waiting, or throws: closed, larger than the whole queue, or the queue is full. */
  private admit(weight: number, unit: string): void {
    if (this.closing) throw new InferenceClosedError();
    const { maxQueueDepth } = this.options;
    if (weight > maxQueueDepth) {
      throw new InferenceInputError(`request has ${weight} ${unit}; at most ${maxQueueDepth} are accepted`);
    }
    if (this.waitingInstances + weight > maxQueueDepth) {
      throw new InferenceOverloadedError(
        `inference queue is full (${this.waitingInstances} of ${maxQueueDepth} instances waiting)`,
      );
    }
    this.waitingInstances += weight;
  }

  /** Runs work that occupies a slot without going through the batching queue (model loads). */
  async occupySlot<T>(work: () => Promise<T>): Promise<T> {
    if (this.closing) throw new InferenceClosedError();
    this.inFlightBatches += 1;
    try {
      return await work();
    } finally {
      this.inFlightBatches -= 1;
      this.onSlotFreed();
    }
  }

  /** Stops admitting requests and resolves once everything admitted has finished. */
  drain(): Promise<void> {
    this.closing = true;
    const drained = new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    // Anything still waiting for its batch to fill is flushed now.
    this.pump();
    this.resolveDrainIfIdle();
    return drained;
  }

  private async enqueueWhenPrepared(
    groupKey: string,
    instances: number,
    request: TRequest,
    prepare: () => Promise<void>,
  ): Promise<TResult> {
    try {
      await prepare();
    } catch (error) {
      this.waitingInstances -= instances;
      this.resolveDrainIfIdle();
      throw error;
    }
    return new Promise<TResult>((resolve, reject) => {
      let group = this.groups.get(groupKey);
      if (!group) {
        group = { requests: [], instances: 0 };
        this.groups.set(groupKey, group);
      }
      group.requests.push({ request, instances, enqueuedAt: performance.now(), resolve, reject });
      group.instances += instances;
      this.schedulePump();
    });
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.pumpScheduled = false;
    clearTimeout(this.stagingTimer);
    this.stagingTimer = undefined;
    const maxInFlight = this.options.slots * PIPELINE_DEPTH_PER_SLOT;
    const now = performance.now();
    while (this.inFlightBatches < maxInFlight) {
      const freeSlots = this.options.slots - this.inFlightBatches;
      const job = this.aloneJobs[0];
      const beforeJob = (group: RequestGroup<TRequest, TResult>) =>
        job === undefined || group.requests[0]!.enqueuedAt < job.enqueuedAt;
      const oldest = this.oldestGroup(
        (group) => beforeJob(group) && (freeSlots > 0 || this.isReadyToStage(group, now)),
      );
      if (!oldest && job && freeSlots > 0) {
        this.aloneJobs.shift();
        this.waitingInstances -= job.weight;
        this.inFlightBatches += 1;
        job.start();
        continue;
      }
      if (!oldest) break;
      const [groupKey, group] = oldest;
      // Spread what is waiting over the idle workers rather than queueing it all on one.
      const batchLimit = freeSlots > 0 ? Math.ceil(group.instances / freeSlots) : this.options.maxBatchSize;
      this.dispatch(groupKey, group, Math.min(batchLimit, this.options.maxBatchSize));
    }
    if (this.inFlightBatches < maxInFlight) this.armStagingTimer(now);
  }

  private isReadyToStage(group: RequestGroup<TRequest, TResult>, now: number): boolean {
    const oldest = group.requests[0];
    return (
      oldest !== undefined &&
      (this.closing ||
        !this.options.batching ||
        group.instances >= this.options.maxBatchSize ||
        now - oldest.enqueuedAt >= this.options.maxWaitMs)
    );
  }

  /** The eligible group whose head request has waited longest (fair across models). */
  private oldestGroup(
    eligible: (group: RequestGroup<TRequest, TResult>) => boolean,
  ): [string, RequestGroup<TRequest, TResult>] | undefined {
    let oldest: [string, RequestGroup<TRequest, TResult>] | undefined;
    let oldestAt = Infinity;
    for (const [key, group] of this.groups) {
      const enqueuedAt = group.requests[0]?.enqueuedAt ?? Infinity;
      if (enqueuedAt < oldestAt && eligible(group)) {
        oldest = [key, group];
        oldestAt = enqueuedAt;
      }
    }
    return oldest;
  }

  /** Wakes the pump when the oldest not-yet-ready group reaches `maxWaitMs`. */
  private armStagingTimer(now: number): void {
    const oldest = this.oldestGroup(() => true)?.[1].requests[0];
    if (!oldest) return;
    const delayMs = Math.max(0, oldest.enqueuedAt + this.options.maxWaitMs - now);
    this.stagingTimer = setTimeout(() => this.pump(), delayMs);
  }

  private dispatch(groupKey: string, group: RequestGroup<TRequest, TResult>, maxInstances: number): void {
    const batch = group.requests.splice(0, this.batchLength(group, maxInstances));
    const instances = batch.reduce((sum, queued) => sum + queued.instances, 0);
    group.instances -= instances;
    if (group.requests.length === 0) this.groups.delete(groupKey);
    this.waitingInstances -= instances;
    this.inFlightBatches += 1;
    void this.execute(batch);
  }

  /** How many leading requests of the group form the next batch (always at least one). */
  private batchLength(group: RequestGroup<TRequest, TResult>, maxInstances: number): number {
    if (!this.options.batching) return 1;
    let count = 0;
    let instances = 0;
    for (const queued of group.requests) {
      if (count > 0 && instances + queued.instances > maxInstances) break;
      count += 1;
      instances += queued.instances;
    }
    return count;
  }

  private async execute(batch: QueuedRequest<TRequest, TResult>[]): Promise<void> {
    try {
      await this.settle(batch);
    } finally {
      this.inFlightBatches -= 1;
      this.onSlotFreed();
    }
  }

  /**
   * Runs the batch and settles each request. A merged batch that fails on its input is halved and
   * each half run again (in this slot, one after the other) until the requests to blame are alone:
   * one caller's bad input never fails the others. Other failures (a broken runtime) fail the batch.
   */
  private async settle(batch: QueuedRequest<TRequest, TResult>[]): Promise<void> {
    try {
      const results = await this.runBatch(batch.map((queued) => queued.request));
      if (results.length !== batch.length) {
        throw new Error(`batch of ${batch.length} requests produced ${results.length} results`);
      }
      batch.forEach((queued, index) => queued.resolve(results[index]!));
    } catch (error) {
      if (batch.length > 1 && error instanceof InferenceInputError) {
        const half = Math.ceil(batch.length / 2);
        await this.settle(batch.slice(0, half));
        await this.settle(batch.slice(half));
        return;
      }
      for (const queued of batch) queued.reject(error);
    }
  }

  private onSlotFreed(): void {
    this.pump();
    this.resolveDrainIfIdle();
  }

  private resolveDrainIfIdle(): void {
    if (!this.closing || this.waitingInstances > 0 || this.inFlightBatches > 0) return;
    clearTimeout(this.stagingTimer);
    this.stagingTimer = undefined;
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }
}
