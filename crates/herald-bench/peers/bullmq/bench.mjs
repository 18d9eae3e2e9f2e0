// The peer comparison of herald-bench: the work of herald's end-to-end throughput scenario, done
// by BullMQ 5 (https://docs.bullmq.io), the most used Redis job queue.
//
// Enqueues JOBS webhook jobs for ENDPOINTS endpoints with Queue.addBulk (1,000 per call), each
// carrying the endpoint's URL and a PAYLOAD-byte JSON body in herald-bench's format (so the
// receiver counts every job and its duplicates), then runs one Worker with CONCURRENCY whose
// processor POSTs the body with fetch (keep-alive), reads the answer, and fails on a non-2xx
// answer; BullMQ then acknowledges (removeOnComplete) or schedules a retry (21 attempts,
// exponential backoff), as herald does. Prints one JSON line.
//
// Environment: REDIS_PORT (required), RECEIVER (base URL of `herald-bench receive`, required),
// JOBS (200000), ENDPOINTS (1000), CONCURRENCY (100), PAYLOAD (1024).
//
// Run it through run.sh, which starts Redis and the receiver.

import { createRequire } from 'node:module';
import { Queue, Worker } from 'bullmq';

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) throw new Error(`${name} is required`);
    return fallback;
  }
  return v;
};
const port = Number(env('REDIS_PORT'));
const receiver = env('RECEIVER');
const jobs = Number(env('JOBS', '200000'));
const endpoints = Number(env('ENDPOINTS', '1000'));
const concurrency = Number(env('CONCURRENCY', '100'));
const size = Number(env('PAYLOAD', '1024'));
if (port === 6379) throw new Error('refusing Redis port 6379');

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

// herald-bench's payload: {"i":<index>,"t":<µs>,"pad":"xxx…"} of exactly `size` bytes.
function payload(i) {
  const head = `{"i":${i},"t":${nowUs()},"pad":"`;
  return head + 'x'.repeat(Math.max(0, size - head.length - 2)) + '"}';
}

const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
const queue = new Queue('webhooks', { connection });
await queue.waitUntilReady();
await queue.obliterate({ force: true });

const jobOpts = {
  removeOnComplete: true,
  removeOnFail: 1000,
  attempts: 21,
  backoff: { type: 'exponential', delay: 3000 },
};
const enqueueStart = performance.now();
for (let i = 0; i < jobs; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(i + 1000, jobs); j++) {
    const e = j % endpoints;
    batch.push({
      name: 'deliver',
      data: { endpoint: `bench-${e}`, url: `${receiver}/hook/${e}`, body: payload(j) },
      opts: jobOpts,
    });
  }
  await queue.addBulk(batch);
}
const enqueueSeconds = (performance.now() - enqueueStart) / 1000;

let completed = 0;
let failed = 0;
let lastUs = 0;
let finish;
const allDone = new Promise((resolve) => {
  finish = resolve;
});
const worker = new Worker(
  'webhooks',
  async (job) => {
    const res = await fetch(job.data.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'bullmq-peer',
        'webhook-id': `msg_${job.id}`,
      },
      body: job.data.body,
    });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
  },
  { connection, concurrency, autorun: false },
);
worker.on('completed', () => {
  completed += 1;
  if (completed === jobs) {
    lastUs = nowUs();
    finish();
  }
});
worker.on('failed', () => {
  failed += 1;
});
const startUs = nowUs();
worker.run();
await allDone;
await worker.close();

const stats = await (await fetch(`${receiver}/stats`)).json();
// From the first request the receiver saw to the last acknowledgement, as herald-bench counts.
const from = stats.first_us > 0 ? stats.first_us : startUs;
const seconds = (lastUs - from) / 1e6;
const left = await queue.getJobCounts('wait', 'active', 'delayed', 'failed');
await queue.close();

const require = createRequire(import.meta.url);
console.log(
  JSON.stringify({
    peer: 'bullmq',
    bullmq: require('bullmq/package.json').version,
    node: process.version,
    jobs,
    endpoints,
    concurrency,
    payload_bytes: size,
    enqueue_jobs_per_s: Math.round(jobs / enqueueSeconds),
    seconds: Math.round(seconds * 1000) / 1000,
    deliveries_per_s: Math.round(jobs / seconds),
    failed_attempts: failed,
    left_in_queue: left,
    receiver: stats,
    delivered_once: stats.unique === jobs && stats.duplicates === 0,
  }),
);
process.exit(0);
