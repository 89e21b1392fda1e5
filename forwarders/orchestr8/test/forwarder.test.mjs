// The forwarder against a stand-in of the exporter's ingest API on a loopback port.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';

import { EVENT_TYPES, forwardBus } from '../forwarder.mjs';
import { FakeBus } from './fake-bus.mjs';

const TOKEN = 'test-token';

// Answers 200 {accepted, duplicates} by id, unless told otherwise for the next requests.
class StandIn {
  requests = []; // {headers, events, at} of every request, answered or not
  stored = []; // events of the requests answered 200, first time seen
  #ids = new Set();
  #plan = [];
  #server = createServer((request, response) => this.#handle(request, response));

  async start() {
    await new Promise((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.#server.address().port}`;
    return this;
  }

  /** The next requests' answers, in order: {status, body, headers}, {delayMs} or 'drop'. */
  answerNext(...answers) {
    this.#plan.push(...answers);
  }

  ids(index) {
    return this.requests[index].events.map((event) => event.id);
  }

  close() {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(resolve));
  }

  async #handle(request, response) {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const events = Buffer.concat(chunks).toString().split('\n').filter((line) => line.trim())
      .map((line) => JSON.parse(line));
    this.requests.push({ headers: request.headers, events, at: performance.now() });
    const answer = this.#plan.shift() ?? {};
    if (answer === 'drop') return request.socket.destroy();
    if (answer.delayMs) await sleep(answer.delayMs);
    if (answer.status) return reply(response, answer.status, answer.body ?? {}, answer.headers);
    reply(response, 200, this.#store(events));
  }

  #store(events) {
    const fresh = events.filter((event) => !this.#ids.has(event.id));
    for (const event of fresh) this.#ids.add(event.id);
    this.stored.push(...fresh);
    return { accepted: fresh.length, duplicates: events.length - fresh.length };
  }
}

function reply(response, status, body, headers = {}) {
  if (response.destroyed) return;
  response.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition, what, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

// A flush() that hangs must fail the test, not stall the run.
function within(promise, what, timeoutMs = 3000) {
  let timer;
  const expired = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

// A stand-in, a bus and a forwarder, all closed after the test; console.warn is captured.
async function setUp(t, options = {}) {
  const server = await new StandIn().start();
  const bus = new FakeBus();
  const warnings = t.mock.method(console, 'warn', () => {});
  const forwarder = forwardBus(bus, {
    url: server.url, token: TOKEN, flushIntervalMs: 20, maxRetryDelayMs: 100, ...options,
  });
  t.after(async () => {
    await forwarder.close({ timeoutMs: 200 });
    await server.close();
    assert.deepEqual(bus.swallowed, [], 'a listener threw');
  });
  return { server, bus, forwarder, warnings };
}

function stepStarted(n) {
  return { type: 'step.started', stepId: `s${n}`, executionId: 'e-1' };
}

function publishSteps(bus, count) {
  for (let n = 1; n <= count; n += 1) bus.publish(stepStarted(n));
}

test('each event gets an id, a timestamp, the source, and goes out as NDJSON', async (t) => {
  const { server, bus, forwarder } = await setUp(t, { idPrefix: 'p', source: 'orch-1' });
  bus.publish({ type: 'workflow.started', workflowId: 'wf', timestamp: 1_700_000_000_123 });
  bus.publish({ type: 'execution.started', executionId: 'e-1' });
  await within(forwarder.flush(), 'flush');

  const [request] = server.requests;
  assert.equal(request.headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(request.headers['content-type'], 'application/x-ndjson');
  const [started, execution] = request.events;
  assert.deepEqual(started, { id: 'p-1', type: 'workflow.started', workflowId: 'wf',
    timestamp: 1_700_000_000_123, source: 'orch-1' });
  assert.equal(execution.id, 'p-2');
  assert.ok(Math.abs(Date.parse(execution.timestamp) - Date.now()) < 5000, execution.timestamp);
  assert.deepEqual(forwarder.stats,
    { forwarded: 2, duplicates: 0, rejected: 0, dropped: 0, retries: 0, buffered: 0 });
});

test('an Error goes out as {name, message}; output is left out', async (t) => {
  const { server, bus, forwarder } = await setUp(t);
  const error = Object.assign(new Error('Operation timed out after 30000ms'), { name: 'TIMEOUT' });
  bus.publish({ type: 'step.failed', stepId: 's1', error, retryable: true });
  bus.publish({ type: 'step.completed', stepId: 's2', output: { text: 'x'.repeat(100_000) } });
  await within(forwarder.flush(), 'flush');

  const [failed, completed] = server.stored;
  assert.deepEqual(failed.error, { name: 'TIMEOUT', message: 'Operation timed out after 30000ms' });
  assert.equal(failed.retryable, true);
  assert.equal('output' in completed, false);
  assert.equal(completed.stepId, 's2');
});

test('a full batch goes at once; the rest waits', async (t) => {
  const { server, bus, forwarder } = await setUp(t, { batchSize: 3, flushIntervalMs: 60_000 });
  publishSteps(bus, 7);
  await waitFor(() => forwarder.stats.forwarded === 6, 'two full batches');
  await sleep(20);
  assert.deepEqual(server.requests.map((request) => request.events.length), [3, 3]);
  assert.equal(forwarder.stats.buffered, 1);
});

test('a partial batch goes flushIntervalMs after its first event', async (t) => {
  const { server, bus, forwarder } = await setUp(t, { flushIntervalMs: 100 });
  const published = performance.now();
  publishSteps(bus, 2);
  await waitFor(() => forwarder.stats.forwarded === 2, 'the partial batch');
  assert.equal(server.requests.length, 1);
  const waited = server.requests[0].at - published;
  assert.ok(waited >= 95, `sent after ${waited} ms`);
});

test('flush() sends a partial batch at once and resolves when it is acknowledged', async (t) => {
  const { server, bus, forwarder } = await setUp(t, { flushIntervalMs: 60_000 });
  publishSteps(bus, 2);
  await sleep(20);
  assert.equal(server.requests.length, 0);
  await within(forwarder.flush(), 'flush');
  assert.equal(server.stored.length, 2);
  assert.equal(forwarder.stats.buffered, 0);
});

test('the listener only buffers: the injected fetch is called later, by the sender', async (t) => {
  const bodies = [];
  const fetch = async (url, init) => {
    bodies.push({ url, body: init.body });
    return new Response(JSON.stringify({ accepted: 1, duplicates: 0 }), { status: 200 });
  };
  const { bus, forwarder } = await setUp(t, { batchSize: 1, fetch, idPrefix: 'p' });
  bus.listeners('step.started')[0](stepStarted(1));
  assert.equal(bodies.length, 0);

  await within(forwarder.flush(), 'flush');
  assert.equal(bodies.length, 1);
  assert.match(bodies[0].url, /\/api\/v1\/events$/);
  assert.equal(JSON.parse(bodies[0].body).id, 'p-1');
});

test('a 503 is retried with the same batch and ids', async (t) => {
  const { server, bus, forwarder } = await setUp(t);
  server.answerNext({ status: 503, body: { code: 'busy' }, headers: { 'Retry-After': '0' } },
    { status: 503, body: { code: 'ledger_unavailable' } });
  publishSteps(bus, 4);
  await within(forwarder.flush(), 'flush');

  assert.equal(server.requests.length, 3);
  assert.deepEqual(server.ids(1), server.ids(0));
  assert.deepEqual(server.ids(2), server.ids(0));
  assert.equal(forwarder.stats.retries, 2);
  assert.equal(forwarder.stats.forwarded, 4);
});

test('a dropped connection or a late answer is retried with the same ids', async (t) => {
  const { server, bus, forwarder } = await setUp(t, { timeoutMs: 150 });
  server.answerNext('drop', { delayMs: 400 });
  publishSteps(bus, 3);
  await within(forwarder.flush(), 'flush');

  // A loaded machine may time out more requests; whatever their number, all carry the same ids.
  const { requests } = server;
  assert.ok(requests.length >= 3, `${requests.length} requests`);
  for (const index of requests.keys()) assert.deepEqual(server.ids(index), server.ids(0));
  const { forwarded, duplicates, retries } = forwarder.stats;
  assert.equal(retries, requests.length - 1);
  // The late answer's batch may be stored before or after its resend: counted once either way.
  assert.equal(forwarded + duplicates, 3);
  assert.equal(server.stored.length, 3);
});

test('a 422 naming index 3 drops that event and resends the others', async (t) => {
  const refused = [];
  const { server, bus, forwarder } = await setUp(t, {
    idPrefix: 'p', onRejected: (event, reason) => refused.push({ id: event.id, reason }),
  });
  server.answerNext({ status: 422, body: { code: 'invalid_events', message: '1 of 6 invalid',
    details: [{ index: 3, field: 'step_id', reason: 'is required' }], request_id: 'r' } });
  publishSteps(bus, 6);
  await within(forwarder.flush(), 'flush');

  assert.equal(server.requests.length, 2);
  assert.deepEqual(server.ids(1), ['p-1', 'p-2', 'p-3', 'p-5', 'p-6']);
  assert.deepEqual(refused, [{ id: 'p-4', reason: 'step_id: is required' }]);
  assert.deepEqual(forwarder.stats,
    { forwarded: 5, duplicates: 0, rejected: 1, dropped: 0, retries: 0, buffered: 0 });
});

test('a 401 or a 422 naming no event drops the batch, without retrying', async (t) => {
  const { server, bus, forwarder, warnings } = await setUp(t);
  server.answerNext({ status: 401, body: { code: 'unauthorized', message: 'bad token' } },
    { status: 422, body: { code: 'invalid_events', details: [{ field: 'x', reason: 'y' }] } });
  publishSteps(bus, 2);
  await within(forwarder.flush(), 'first flush');
  publishSteps(bus, 3);
  await within(forwarder.flush(), 'second flush');

  assert.equal(server.requests.length, 2);
  assert.equal(forwarder.stats.rejected, 5);
  assert.equal(forwarder.stats.retries, 0);
  assert.match(warnings.mock.calls[0].arguments[0], /2 events refused: 401 unauthorized/);
});

test('a 413 splits the batch in halves', async (t) => {
  const { server, bus, forwarder } = await setUp(t, { batchSize: 4 });
  server.answerNext({ status: 413, body: { code: 'payload_too_large' } });
  publishSteps(bus, 4);
  await within(forwarder.flush(), 'flush');

  assert.deepEqual(server.requests.map((request) => request.events.length), [4, 2, 2]);
  assert.deepEqual([...server.ids(1), ...server.ids(2)], server.ids(0));
  assert.equal(forwarder.stats.forwarded, 4);
});

test('a full buffer drops the oldest events, counted and warned once', async (t) => {
  const { server, bus, forwarder, warnings } = await setUp(t, {
    idPrefix: 'p', maxBuffer: 3, flushIntervalMs: 60_000,
  });
  publishSteps(bus, 6);
  await sleep(10);
  assert.equal(forwarder.stats.dropped, 3);
  assert.equal(forwarder.stats.buffered, 3);
  assert.equal(warnings.mock.callCount(), 1);

  await within(forwarder.flush(), 'flush');
  assert.deepEqual(server.ids(0), ['p-4', 'p-5', 'p-6']);
});

test('close() unsubscribes, delivers what is buffered and resolves with the stats', async (t) => {
  const { server, bus, forwarder } = await setUp(t, { flushIntervalMs: 60_000 });
  assert.equal(bus.listenerCount('step.started'), 1);
  publishSteps(bus, 2); // still being delivered when close() is called

  const stats = await within(forwarder.close(), 'close');
  assert.equal(stats.forwarded, 2);
  assert.equal(server.stored.length, 2);
  for (const type of EVENT_TYPES) assert.equal(bus.listenerCount(type), 0, type);
  publishSteps(bus, 1);
  await sleep(40);
  assert.equal(server.requests.length, 1);
});

test('close() gives up after its timeout while the exporter keeps failing', async (t) => {
  const { server, bus, forwarder } = await setUp(t);
  server.answerNext(...Array.from({ length: 50 }, () => ({ status: 503 })));
  publishSteps(bus, 3);

  const stats = await within(forwarder.close({ timeoutMs: 250 }), 'close');
  assert.equal(stats.dropped, 3);
  assert.equal(stats.buffered, 0);
  assert.equal(stats.forwarded, 0);
});

test('a resend through a forwarder with the same idPrefix is only duplicates', async (t) => {
  const { server, bus, forwarder } = await setUp(t, { idPrefix: 'run' });
  publishSteps(bus, 3);
  await within(forwarder.flush(), 'flush');

  const otherBus = new FakeBus();
  const resend = forwardBus(otherBus, { url: server.url, token: TOKEN, idPrefix: 'run' });
  publishSteps(otherBus, 3);
  const stats = await within(resend.close(), 'close');
  assert.deepEqual([stats.forwarded, stats.duplicates], [0, 3]);
  assert.equal(server.stored.length, 3);
});

test('the listener never throws, whatever the event holds', async (t) => {
  const { server, bus, forwarder, warnings } = await setUp(t);
  const circular = { name: 'loop' };
  circular.self = circular;
  const shared = { n: 1 };
  bus.publish({ type: 'step.completed', stepId: 's1', output: circular });
  bus.publish({ type: 'step.completed', stepId: 's2', output: 10n ** 30n });
  bus.publish({ type: 'step.started', stepId: 's3', executionId: 'e', size: 12n,
    meta: circular, twice: [shared, shared] });
  bus.publish({ type: 'step.started', stepId: 's4', executionId: 'e',
    get broken() { throw new Error('getter'); } });
  bus.publish({ type: 'step.started', stepId: 's5', executionId: 'e',
    detail: { toJSON() { throw new Error('toJSON'); } } });
  const listener = bus.listeners('step.started')[0];
  assert.doesNotThrow(() => listener(null));
  assert.doesNotThrow(() => listener('text'));
  await within(forwarder.flush(), 'flush');

  const byStep = Object.fromEntries(server.stored.map((event) => [event.stepId, event]));
  assert.deepEqual(Object.keys(byStep).sort(), ['s1', 's2', 's3', 's5']);
  assert.equal('output' in byStep.s1, false);
  assert.equal(byStep.s3.size, '12');
  assert.deepEqual(byStep.s3.meta, { name: 'loop', self: '[Circular]' });
  assert.deepEqual(byStep.s3.twice, [{ n: 1 }, { n: 1 }]);
  assert.equal('detail' in byStep.s5, false);
  assert.equal(byStep.s5.executionId, 'e');
  // s4's getter throws while it is copied, and the two non-objects: refused, never thrown.
  assert.equal(forwarder.stats.rejected, 3);
  assert.equal(warnings.mock.callCount(), 3);
});
