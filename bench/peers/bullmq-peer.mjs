// ffbench's BullMQ peer: ffbench's peers scenario writes this file next to
// its pinned BullMQ install and runs it once per measured run.
//
// stdin:  one JSON line, the run's config; then, once this process printed
//         {"event":"ready"}, one line {"t0": <unix ms>}: when the producer
//         starts. The measured window is [t0 + warmup, + duration).
// stdout: JSON lines: {"event":"ready"}, then {"event":"result", ...} (or
//         {"event":"error", "error": ...}).
//
// The main thread runs cfg.workers BullMQ workers of cfg.concurrency each.
// The producer runs on a worker thread (its own event loop and connection),
// so pacing the arrivals never delays a handler. Every job carries its
// sequence number and its intended time, in microseconds of
// process.hrtime (CLOCK_MONOTONIC: one clock for both threads); the handler
// counts each sequence (a lost or duplicated job fails the run) and times
// its start from the intended time.
import { Queue, Worker } from 'bullmq';
import { Worker as Thread, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createInterface } from 'node:readline';

const nowUs = () => Number(process.hrtime.bigint() / 1000n);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const connectionOf = (cfg) => ({ host: cfg.host, port: cfg.port, maxRetriesPerRequest: null });
const inWindow = (t, w) => t >= w.from && t < w.to;
const keepSome = (list, e) => {
  if (list.length < 20) list.push(String((e && e.message) || e));
};

if (isMainThread) {
  main().catch((e) => emit({ event: 'error', error: String((e && e.stack) || e) }, 1));
} else {
  producer().catch((e) => parentPort.postMessage({ event: 'error', error: String((e && e.stack) || e) }));
}

function emit(msg, exitCode) {
  process.stdout.write(JSON.stringify(msg) + '\n', () => {
    if (exitCode !== undefined) process.exit(exitCode);
  });
}

async function main() {
  const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const readLine = async () => {
    const { value, done } = await input.next();
    if (done) throw new Error('stdin closed');
    return JSON.parse(value);
  };
  const cfg = await readLine();

  // handled[0] counts handler calls; the closed-loop producer reads it.
  const handled = new Int32Array(new SharedArrayBuffer(4));
  let counts = new Uint8Array(1 << 16);
  let completed = 0;
  let dups = 0;
  let windowDone = 0;
  const win = { from: Infinity, to: Infinity };
  const handlerStart = [];
  const errors = [];
  let closing = false;

  const processor = async (job) => {
    const start = nowUs();
    const { s, t } = job.data;
    while (s >= counts.length) {
      const grown = new Uint8Array(counts.length * 2);
      grown.set(counts);
      counts = grown;
    }
    if (counts[s] === 0) completed++;
    else dups++;
    if (counts[s] < 255) counts[s]++;
    if (inWindow(start, win)) windowDone++;
    if (cfg.open && inWindow(t, win)) handlerStart.push(start - t);
    Atomics.add(handled, 0, 1);
    Atomics.notify(handled, 0);
  };
  const workers = [];
  for (let i = 0; i < cfg.workers; i++) {
    const w = new Worker(cfg.queue, processor, { connection: connectionOf(cfg), concurrency: cfg.concurrency });
    w.on('error', (e) => closing || keepSome(errors, e));
    w.on('failed', (job, e) => keepSome(errors, `job ${job && job.id} failed: ${e}`));
    workers.push(w);
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));

  const thread = new Thread(new URL(import.meta.url), { workerData: { cfg, handled: handled.buffer } });
  const inbox = [];
  let wake = () => {};
  thread.on('message', (m) => {
    inbox.push(m);
    wake();
  });
  thread.on('error', (e) => {
    inbox.push({ event: 'error', error: String(e) });
    wake();
  });
  const expect = async (event) => {
    for (;;) {
      const i = inbox.findIndex((m) => m.event === event || m.event === 'error');
      if (i >= 0) {
        const m = inbox.splice(i, 1)[0];
        if (m.event === 'error') throw new Error('producer: ' + m.error);
        return m;
      }
      await new Promise((resolve) => {
        wake = resolve;
      });
    }
  };
  await expect('ready');
  emit({ event: 'ready' });

  const go = await readLine();
  // ffbench's t0 (unix ms) on this process's monotonic clock.
  const t0 = nowUs() + (go.t0 - (performance.timeOrigin + performance.now())) * 1000;
  win.from = t0 + cfg.warmupMs * 1000;
  win.to = win.from + cfg.durationMs * 1000;
  thread.postMessage({ t0, from: win.from, to: win.to });
  const done = await expect('done');

  // Drain: wait (not measured) until every submitted job was handled.
  const expected = done.issued - done.failed.length;
  const drainEnd = Date.now() + cfg.drainMs;
  while (completed < expected && Date.now() < drainEnd) await sleep(5);
  const failed = new Set(done.failed);
  let lost = 0;
  for (let s = 0; s < done.issued; s++) {
    if (!failed.has(s) && (s >= counts.length || counts[s] === 0)) lost++;
  }
  closing = true;
  // close() waits for the jobs in hand: their completions land first.
  await Promise.all(workers.map((w) => w.close()));
  await thread.terminate();
  emit(
    {
      event: 'result',
      issued: done.issued,
      failed: done.failed.length,
      completed,
      dups,
      lost,
      settled: completed >= expected,
      windowDone,
      windowOps: done.windowOps,
      handlerStart,
      sendLag: done.sendLag,
      submit: done.submit,
      errors: errors.concat(done.errors),
    },
    0,
  );
}

// uniform returns a xorshift32 generator of numbers in (0, 1).
function uniform(seed) {
  let x = seed % 4294967296 >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return (x + 0.5) / 4294967296;
  };
}

async function producer() {
  const cfg = workerData.cfg;
  const handled = new Int32Array(workerData.handled);
  const queue = new Queue(cfg.queue, { connection: connectionOf(cfg) });
  await queue.waitUntilReady();
  parentPort.postMessage({ event: 'ready' });
  const win = await new Promise((resolve) => parentPort.once('message', resolve));
  const end = win.t0 + (cfg.warmupMs + cfg.durationMs) * 1000;
  const pad = 'x'.repeat(Math.max(0, cfg.payloadBytes - 16));

  let issued = 0;
  let windowOps = 0;
  let outstanding = 0;
  let allSettled = () => {};
  const failed = [];
  const errors = [];
  const sendLag = [];
  const submit = [];
  const add = (seq, intended) => {
    const sent = nowUs();
    const timed = cfg.open && inWindow(intended, win);
    if (timed) sendLag.push(sent - intended);
    outstanding++;
    queue
      .add('noop', { s: seq, t: intended, p: pad })
      .then(
        () => {
          if (timed) submit.push(nowUs() - sent);
        },
        (e) => {
          failed.push(seq);
          keepSome(errors, e);
          Atomics.notify(handled, 0); // a closed loop's token came back
        },
      )
      .finally(() => {
        if (--outstanding === 0) allSettled();
      });
  };

  const untilStart = win.t0 - nowUs();
  if (untilStart > 0) await sleep(untilStart / 1000);
  if (cfg.open) {
    const u = uniform(cfg.seed);
    const gap = cfg.arrivals === 'poisson' ? () => (-Math.log(1 - u()) / cfg.rate) * 1e6 : () => 1e6 / cfg.rate;
    // A Node timer fires on whole milliseconds: the last stretch before an
    // arrival is slept with Atomics.wait (a futex with a sub-millisecond
    // timeout; a worker thread may block), so the producer's own lag stays
    // out of the latency without spinning on a CPU the system needs.
    const nap = new Int32Array(new SharedArrayBuffer(4));
    let next = win.t0;
    while (next < end) {
      let wait = next - nowUs();
      if (wait > 2500) {
        await sleep((wait - 1500) / 1000);
        wait = next - nowUs();
      }
      if (wait > 0) Atomics.wait(nap, 0, 0, wait / 1000);
      if (inWindow(next, win)) windowOps++;
      add(issued++, next);
      next += gap();
      // queue.add writes its command after a few promise turns: let them
      // run before this thread may block in Atomics.wait.
      await new Promise((resolve) => setImmediate(resolve));
    }
  } else {
    // Closed loop: cfg.inFlight jobs outstanding (submitted, not yet
    // handled); a handled job lets the next one go. The handlers run on
    // the other thread, so a burst of sends yields now and then to let
    // this thread's replies in.
    let burst = 0;
    while (nowUs() < end) {
      const h = Atomics.load(handled, 0);
      if (issued - h - failed.length < cfg.inFlight) {
        add(issued++, nowUs());
        if (++burst >= 64) {
          burst = 0;
          await new Promise((resolve) => setImmediate(resolve));
        }
        continue;
      }
      burst = 0;
      const w = Atomics.waitAsync(handled, 0, h, Math.max(1, (end - nowUs()) / 1000));
      if (w.async) await w.value;
    }
  }
  if (outstanding > 0) {
    await new Promise((resolve) => {
      allSettled = resolve;
    });
  }
  await queue.close();
  parentPort.postMessage({ event: 'done', issued, failed, windowOps, sendLag, submit, errors });
}
