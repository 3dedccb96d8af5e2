import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { BatchScheduler, type BatchSchedulerOptions } from '../../src/inference/batch-scheduler.js';
import {
  InferenceClosedError,
  InferenceInputError,
  InferenceOverloadedError,
  InferenceRuntimeError,
} from '../../src/inference/errors.js';

interface Request {
  id: string;
  instances: number;
}

/** A scheduler whose batches finish only when the test releases them. */
function controlledScheduler(overrides: Partial<BatchSchedulerOptions> = {}) {
  const batches: { ids: string[]; finish(): void }[] = [];
  const scheduler = new BatchScheduler<Request, string>(
    { slots: 1, maxBatchSize: 4, maxWaitMs: 30, maxQueueDepth: 100, batching: true, ...overrides },
    (requests) =>
      new Promise((resolve) => {
        const ids = requests.map((request) => request.id);
        batches.push({ ids, finish: () => resolve(ids.map((id) => `done:${id}`)) });
      }),
  );
  const submit = (id: string, instances = 1, group = 'model-a') =>
    scheduler.submit(group, instances, { id, instances }, async () => {});
  return { scheduler, batches, submit };
}

const ready = () => new Promise((resolve) => setImmediate(resolve));

test('requests arriving together share a batch; other groups get their own', async () => {
  const { batches, submit } = controlledScheduler({ slots: 1, maxWaitMs: 0 });
  const results = [submit('a1'), submit('a2'), submit('b1', 1, 'model-b'), submit('a3')];
  await ready();
  await ready();
  assert.deepEqual(
    batches.map((batch) => batch.ids),
    [['a1', 'a2', 'a3'], ['b1']],
  );
  for (const batch of batches) batch.finish();
  assert.deepEqual(await Promise.all(results), ['done:a1', 'done:a2', 'done:b1', 'done:a3']);
});

test('waiting requests are spread over idle slots', async () => {
  const { batches, submit } = controlledScheduler({ slots: 2, maxBatchSize: 8 });
  const results = ['a', 'b', 'c', 'd', 'e', 'f'].map((id) => submit(id));
  await ready();
  await ready();
  assert.deepEqual(
    batches.map((batch) => batch.ids),
    [
      ['a', 'b', 'c'],
      ['d', 'e', 'f'],
    ],
  );
  for (const batch of batches) batch.finish();
  await Promise.all(results);
});

test('while every slot is busy, a partial batch is staged after maxWaitMs', async () => {
  const { batches, submit } = controlledScheduler({ maxWaitMs: 30 });
  void submit('first');
  await ready();
  await ready();
  void submit('second');
  void submit('third');
  await sleep(10);
  assert.equal(batches.length, 1, 'the partial batch is still filling');
  await sleep(40);
  assert.deepEqual(
    batches.map((batch) => batch.ids),
    [['first'], ['second', 'third']],
  );
  for (const batch of batches) batch.finish();
});

test('while every slot is busy, a full batch is staged without waiting', async () => {
  const { batches, submit } = controlledScheduler({ maxWaitMs: 10_000 });
  void submit('first');
  await ready();
  await ready();
  for (const id of ['b', 'c', 'd', 'e', 'f']) void submit(id);
  await ready();
  await ready();
  assert.deepEqual(
    batches.map((batch) => batch.ids),
    [['first'], ['b', 'c', 'd', 'e']],
  );
  batches[0]!.finish();
  await ready();
  assert.equal(batches.length, 2, 'the staged batch now occupies the slot; the remainder keeps filling');
  batches[1]!.finish();
  await ready();
  assert.deepEqual(batches[2]!.ids, ['f'], 'a free slot takes the remainder at once');
  batches[2]!.finish();
});

test('batches keep arrival order; an oversized request runs alone', async () => {
  const { batches, submit } = controlledScheduler({ slots: 3, maxBatchSize: 4 });
  void submit('one', 1);
  void submit('big', 6);
  void submit('two', 2);
  void submit('three', 2);
  await ready();
  await ready();
  assert.deepEqual(
    batches.map((batch) => batch.ids),
    [['one'], ['big'], ['two', 'three']],
  );
  for (const batch of batches) batch.finish();
});

test('with batching off every request is its own dispatch', async () => {
  const { batches, submit } = controlledScheduler({ slots: 2, batching: false });
  for (const id of ['a', 'b', 'c']) void submit(id);
  await ready();
  await ready();
  assert.deepEqual(
    batches.map((batch) => batch.ids),
    [['a'], ['b'], ['c']],
  );
  for (const batch of batches) batch.finish();
});

test('admission counts waiting instances, including those still being prepared', async () => {
  const { scheduler, batches, submit } = controlledScheduler({ maxQueueDepth: 3 });
  let finishPreparing = () => {};
  const preparing = new Promise<void>((resolve) => (finishPreparing = resolve));
  const slow = scheduler.submit('model-a', 2, { id: 'slow', instances: 2 }, () => preparing);
  await assert.rejects(submit('over', 2), InferenceOverloadedError);
  assert.equal(scheduler.queueDepth, 2);
  const failed = scheduler.submit('model-a', 1, { id: 'failed', instances: 1 }, async () => {
    throw new Error('artifact unavailable');
  });
  await assert.rejects(failed, /artifact unavailable/);
  assert.equal(scheduler.queueDepth, 2, 'a failed prepare releases its reservation');
  finishPreparing();
  await ready();
  await ready();
  assert.equal(scheduler.queueDepth, 0);
  batches[0]!.finish();
  assert.equal(await slow, 'done:slow');
});

test('drain flushes partial batches at once, waits for them, then rejects new work', async () => {
  const { scheduler, batches, submit } = controlledScheduler({ maxWaitMs: 10_000 });
  const first = submit('first');
  await ready();
  await ready();
  const second = submit('second');
  await ready();
  let drained = false;
  const draining = scheduler.drain().then(() => (drained = true));
  assert.deepEqual(
    batches.map((batch) => batch.ids),
    [['first'], ['second']],
  );
  batches[0]!.finish();
  await ready();
  assert.equal(drained, false);
  batches[1]!.finish();
  await draining;
  assert.deepEqual(await Promise.all([first, second]), ['done:first', 'done:second']);
  await assert.rejects(submit('late'), InferenceClosedError);
});

/** A scheduler whose runs fail (with `failure`) for every batch holding a request whose id starts with `bad`. */
function failingScheduler(failure: (ids: string[]) => Error) {
  const batches: string[][] = [];
  const scheduler = new BatchScheduler<Request, string>(
    { slots: 1, maxBatchSize: 16, maxWaitMs: 0, maxQueueDepth: 100, batching: true },
    async (requests) => {
      const ids = requests.map((request) => request.id);
      batches.push(ids);
      if (ids.some((id) => id.startsWith('bad'))) throw failure(ids);
      return ids.map((id) => `done:${id}`);
    },
  );
  const submit = (id: string) => scheduler.submit('model-a', 1, { id, instances: 1 }, async () => {});
  return { scheduler, batches, submit };
}

test('a merged batch that fails on one request input is bisected: only that request fails', async () => {
  const { scheduler, batches, submit } = failingScheduler(
    (ids) => new InferenceInputError(`index out of range in ${ids}`),
  );
  const ids = ['a', 'b', 'c', 'bad', 'd', 'e', 'f', 'g'];
  const settled = await Promise.allSettled(ids.map(submit));
  assert.deepEqual(batches[0], ids, 'the requests were merged into one batch first');
  settled.forEach((result, i) => {
    if (ids[i] === 'bad') {
      assert.equal(result.status, 'rejected');
      assert.ok((result as PromiseRejectedResult).reason instanceof InferenceInputError);
      assert.match((result as PromiseRejectedResult).reason.message, /in bad$/, 'it fails on a run of its own');
    } else {
      assert.deepEqual(result, { status: 'fulfilled', value: `done:${ids[i]}` });
    }
  });
  assert.ok(batches.length <= 1 + 2 * Math.log2(ids.length), `${batches.length} runs: halves, not one run per request`);
  assert.deepEqual([scheduler.queueDepth, scheduler.inFlight], [0, 0]);
});

test('a batch that fails for another reason (a broken runtime) fails as a whole, without reruns', async () => {
  const { batches, submit } = failingScheduler(() => new InferenceRuntimeError('memory access out of bounds'));
  const settled = await Promise.allSettled(['a', 'bad', 'b'].map(submit));
  assert.equal(batches.length, 1);
  for (const result of settled) {
    assert.equal(result.status, 'rejected');
    assert.ok((result as PromiseRejectedResult).reason instanceof InferenceRuntimeError);
  }
});

test('runAlone waits for a free slot, counts its weight against the queue depth, and keeps arrival order', async () => {
  const { scheduler, batches, submit } = controlledScheduler({ slots: 1, maxQueueDepth: 10, maxWaitMs: 0 });
  const first = submit('first');
  await ready();
  await ready();
  assert.equal(batches.length, 1);
  const started: string[] = [];
  let finishJob!: () => void;
  const job = scheduler.runAlone(8, async () => {
    started.push('job');
    await new Promise<void>((resolve) => (finishJob = resolve));
    return 'job done';
  });
  await ready();
  assert.equal(scheduler.queueDepth, 8, 'the waiting job counts against the queue');
  await assert.rejects(
    scheduler.runAlone(3, async () => 'too much'),
    InferenceOverloadedError,
  );
  await assert.rejects(
    scheduler.runAlone(11, async () => 'never fits'),
    InferenceInputError,
  );
  const later = submit('later', 2);
  await assert.rejects(submit('overflow'), InferenceOverloadedError);
  await sleep(5);
  assert.deepEqual(started, [], 'the slot is busy: the job waits');
  assert.deepEqual(
    batches.map((b) => b.ids),
    [['first']],
    'a request that arrived after the job is not staged ahead of it',
  );
  batches[0]!.finish();
  await first;
  await ready();
  assert.deepEqual(started, ['job']);
  // The later request is staged behind the running job, as behind any batch.
  assert.deepEqual(batches[1]!.ids, ['later']);
  assert.equal(scheduler.inFlight, 2);
  finishJob();
  assert.equal(await job, 'job done');
  batches[1]!.finish();
  await later;
  assert.equal(scheduler.queueDepth, 0);
});
