// The command runner against a stand-in of the exporter's command API on a loopback port, with
// a stand-in engine that has @orchestr8's execute(workflow, variables, signal).

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';

import { runCommands } from '../runner.mjs';
import { FakeBus } from './fake-bus.mjs';
import { FakeEngine } from './fake-engine.mjs';

const TOKEN = 'engine-token';
const WF_A = Object.freeze({ id: 'wf-a', durationMs: 60_000, steps: [] });
const WF_B = Object.freeze({ id: 'wf-b', durationMs: 60_000, steps: [] });
const WF_QUICK = Object.freeze({ id: 'wf-quick', durationMs: 10, steps: [] });
const WORKFLOWS = { 'wf-a': WF_A, 'wf-b': WF_B, 'wf-quick': WF_QUICK };

// Queues commands and serves them to the long poll (204 when none comes within holdMs); records
// every poll and every result, and answers 200 unless told otherwise for the next requests.
class StandIn {
  polls = []; // {headers, wait}
  results = []; // {id, status, detail, headers} of every result answered 200
  resultRequests = 0;
  holdMs = 50;
  #queue = [];
  #waiters = new Set();
  #pollPlan = [];
  #resultPlan = [];
  #server = createServer((request, response) => this.#handle(request, response));

  async start() {
    await new Promise((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.#server.address().port}`;
    return this;
  }

  enqueue(...commands) {
    this.#queue.push(...commands);
    for (const wake of this.#waiters) wake();
  }

  /** The next polls' or results' answers, in order: {status, body, headers}. */
  answerPolls(...answers) {
    this.#pollPlan.push(...answers);
  }

  answerResults(...answers) {
    this.#resultPlan.push(...answers);
  }

  close() {
    for (const wake of this.#waiters) wake();
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(resolve));
  }

  async #handle(request, response) {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const url = new URL(request.url, this.url);
    const resultPath = url.pathname.match(/^\/api\/v1\/commands\/([^/]+)\/result$/);
    if (request.method === 'GET' && url.pathname === '/api/v1/commands/next') {
      return this.#next(request, response, url.searchParams.get('wait'));
    }
    if (request.method === 'POST' && resultPath) {
      return this.#result(request, response, decodeURIComponent(resultPath[1]),
        JSON.parse(Buffer.concat(chunks).toString()));
    }
    reply(response, 404, { code: 'not_found' });
  }

  async #next(request, response, wait) {
    this.polls.push({ headers: request.headers, wait });
    const planned = this.#pollPlan.shift();
    if (planned) return reply(response, planned.status, planned.body ?? {}, planned.headers);
    if (this.#queue.length === 0) await this.#commandWithin(this.holdMs);
    if (response.destroyed) return; // the runner gave up this poll: the command stays queued
    const command = this.#queue.shift();
    if (command === undefined) return response.writeHead(204).end();
    reply(response, 200, command);
  }

  #commandWithin(ms) {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#waiters.add(wake);
    });
  }

  #result(request, response, id, body) {
    this.resultRequests += 1;
    const planned = this.#resultPlan.shift();
    if (planned) return reply(response, planned.status, planned.body ?? {}, planned.headers);
    this.results.push({ id, ...body, headers: request.headers });
    reply(response, 200, { id, status: body.status });
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
  for (;;) {
    const value = condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

// An execution or stop() that hangs must fail the test, not stall the run.
function within(promise, what, timeoutMs = 3000) {
  let timer;
  const expired = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

let lastId = 0;

function command(kind, target = {}, args = {}) {
  lastId += 1;
  return { id: `cmd-${lastId}`, kind, target, args, status: 'delivered', deliveries: 1 };
}

// A stand-in, a bus, an engine and a started runner, all stopped after the test; what the
// runner reports goes to `problems`.
async function setUp(t, options = {}, holdMs = 50) {
  const server = await new StandIn().start();
  server.holdMs = holdMs;
  const bus = new FakeBus();
  const engine = new FakeEngine(bus);
  const problems = [];
  const runner = runCommands(engine, {
    url: server.url, token: TOKEN, workflows: WORKFLOWS, bus, waitSeconds: 1,
    maxRetryDelayMs: 100, onError: (error) => problems.push(error), ...options,
  });
  t.after(async () => {
    await within(runner.stop(), 'stop');
    engine.finishAll();
    await server.close();
    assert.deepEqual(bus.swallowed, [], 'a listener threw');
  });
  return { server, bus, engine, runner: runner.start(), problems };
}

/** Queue `commands` and resolve with their results, in their order. */
async function issue(server, ...commands) {
  const before = server.results.length;
  server.enqueue(...commands);
  await waitFor(() => server.results.length >= before + commands.length, 'the results');
  return server.results.slice(before).map(({ id, status, detail }) => ({ id, status, detail }));
}

function knownIds(runner, count) {
  const ids = runner.running.map((run) => run.executionId).filter(Boolean);
  return ids.length === count ? ids : null;
}

test('workflow.start starts an execution and succeeds once it has started', async (t) => {
  const { server, engine, runner } = await setUp(t);
  const start = command('workflow.start', { workflow: 'wf-a' }, { ticket: 'T-1' });
  const [result] = await issue(server, start);

  assert.deepEqual(result, { id: start.id, status: 'succeeded',
    detail: { started: true, workflow: 'wf-a' } });
  assert.equal(engine.calls.length, 1);
  const [call] = engine.calls;
  assert.equal(call.workflow, WF_A);
  assert.deepEqual(call.variables, { ticket: 'T-1' });
  assert.ok(call.signal instanceof AbortSignal && !call.signal.aborted);
  assert.deepEqual(runner.running, [{ workflow: 'wf-a', executionId: call.executionId }]);
  assert.equal(server.polls[0].headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(server.polls[0].wait, '1');
  assert.equal(server.results[0].headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(server.results[0].headers['content-type'], 'application/json');
  assert.deepEqual(runner.stats, { taken: 1, succeeded: 1, failed: 0, rejected: 0, repeated: 0 });
});

test('workflow.start of a workflow the runner does not know fails', async (t) => {
  const { server, engine } = await setUp(t);
  const [result] = await issue(server, command('workflow.start', { workflow: 'wf-nope' }));
  assert.deepEqual([result.status, result.detail], ['failed', 'no workflow wf-nope is known here']);
  assert.equal(engine.calls.length, 0);
});

test('workflows may be a function or a Map', async (t) => {
  for (const workflows of [(id) => WORKFLOWS[id], new Map(Object.entries(WORKFLOWS))]) {
    const { server, engine } = await setUp(t, { workflows });
    const [result] = await issue(server, command('workflow.start', { workflow: 'wf-quick' }));
    assert.equal(result.status, 'succeeded');
    assert.equal(engine.calls[0].workflow, WF_QUICK);
  }
});

test('workflow.cancel aborts the execution it names, and only that one', async (t) => {
  const { server, engine, runner } = await setUp(t);
  const first = runner.execute(WF_A, { n: 1 });
  const second = runner.execute(WF_B, { n: 2 });
  await waitFor(() => knownIds(runner, 2), 'both executionIds');
  const [callA, callB] = engine.calls;

  const cancel = command('workflow.cancel', { run_id: callB.executionId });
  const [result] = await issue(server, cancel);
  assert.deepEqual(result.detail, { cancelled: true, run_id: callB.executionId });
  assert.equal(result.status, 'succeeded');
  assert.deepEqual(await within(second, 'the cancelled execution'),
    { executionId: callB.executionId, status: 'cancelled', steps: {} });
  assert.equal(callB.signal.aborted, true);
  assert.equal(callA.signal.aborted, false);
  assert.deepEqual(runner.running, [{ workflow: 'wf-a', executionId: callA.executionId }]);

  const [again] = await issue(server, command('workflow.cancel', { run_id: callB.executionId }),
    command('workflow.cancel', { run_id: 'exec-nope' }));
  assert.deepEqual([again.status, again.detail],
    ['failed', `no execution ${callB.executionId} runs here: it has ended`]);
  assert.deepEqual(server.results.at(-1).detail, 'no execution exec-nope runs here');
  engine.finishAll();
  assert.equal((await within(first, 'the other execution')).status, 'completed');
});

test('two executions of one workflow get their executionIds in the order they started',
  async (t) => {
    const { server, engine, runner } = await setUp(t);
    const executions = [runner.execute(WF_A, { n: 1 }), runner.execute(WF_A, { n: 2 })];
    await waitFor(() => knownIds(runner, 2), 'both executionIds');
    assert.deepEqual(runner.running.map((run) => run.executionId),
      engine.calls.map((call) => call.executionId));

    await issue(server, command('workflow.cancel', { run_id: engine.calls[0].executionId }));
    assert.equal((await within(executions[0], 'the first execution')).status, 'cancelled');
    assert.equal(engine.calls[1].signal.aborted, false);
  });

test('without a bus, an execution can be cancelled by no id; an ended one can be retried',
  async (t) => {
    const { server, engine, runner } = await setUp(t, { bus: undefined });
    const running = runner.execute(WF_A, {});
    await sleep(10);
    const { executionId } = engine.calls[0];
    const [cancel] = await issue(server, command('workflow.cancel', { run_id: executionId }));
    assert.equal(cancel.status, 'failed');
    assert.match(cancel.detail, /without the `bus` option/);
    assert.equal(runner.running[0].executionId, null);

    engine.finishAll();
    await within(running, 'the execution');
    const [retry] = await issue(server,
      command('step.retry', { run_id: executionId, step_id: 's1' }));
    assert.deepEqual(retry.detail, { retried: true, run_id: executionId, workflow: 'wf-a' });
  });

test('step.retry runs the workflow of the run again, as a new execution', async (t) => {
  const { server, engine, runner } = await setUp(t);
  const ended = await within(runner.execute(WF_QUICK, { attempt: 'first' }), 'the execution');
  assert.equal(ended.status, 'completed');

  const retry = command('step.retry', { run_id: ended.executionId, step_id: 's2' });
  const [result] = await issue(server, retry);
  assert.deepEqual(result, { id: retry.id, status: 'succeeded',
    detail: { retried: true, run_id: ended.executionId, workflow: 'wf-quick' } });
  assert.equal(engine.calls.length, 2);
  assert.equal(engine.calls[1].workflow, WF_QUICK);
  assert.deepEqual(engine.calls[1].variables, { attempt: 'first' });
  assert.notEqual(engine.calls[1].executionId, ended.executionId);

  const [unknown] = await issue(server,
    command('step.retry', { run_id: 'exec-nope', step_id: 's1' }));
  assert.deepEqual([unknown.status, unknown.detail], ['failed', 'no execution exec-nope ran here']);
  assert.equal(engine.calls.length, 2);
});

test('fleet.pause of a workflow blocks it alone, until fleet.resume', async (t) => {
  const { server, engine, runner } = await setUp(t);
  const pause = command('fleet.pause', { workflow: 'wf-a' });
  const [paused] = await issue(server, pause);
  assert.deepEqual(paused,
    { id: pause.id, status: 'succeeded', detail: { paused: { workflow: 'wf-a' } } });

  assert.throws(() => runner.execute(WF_A, {}), { name: 'PausedError', message: /wf-a is paused/ });
  const [blocked, other, pausedAgain] = await issue(server,
    command('workflow.start', { workflow: 'wf-a' }),
    command('workflow.start', { workflow: 'wf-b' }),
    command('fleet.pause', { workflow: 'wf-a', source: 'default' }));
  assert.deepEqual([blocked.status, blocked.detail],
    ['failed', 'workflow wf-a is paused (scope {"workflow":"wf-a"})']);
  assert.equal(other.status, 'succeeded');
  assert.equal(pausedAgain.status, 'succeeded');
  assert.deepEqual(engine.calls.map((call) => call.workflow.id), ['wf-b']);
  runner.execute(WF_B, {});

  const [resumed] = await issue(server, command('fleet.resume', { workflow: 'wf-a' }));
  assert.deepEqual(resumed.detail, { resumed: { workflow: 'wf-a' } });
  runner.execute(WF_A, {});
  const [started, resumedAgain] = await issue(server,
    command('workflow.start', { workflow: 'wf-a' }), command('fleet.resume', { workflow: 'wf-a' }));
  assert.equal(started.status, 'succeeded');
  assert.equal(resumedAgain.status, 'succeeded');
  assert.deepEqual(engine.calls.map((call) => call.workflow.id), ['wf-b', 'wf-b', 'wf-a', 'wf-a']);
});

test('an empty scope pauses every workflow; a role, model or task_type scope none', async (t) => {
  const { server, runner } = await setUp(t);
  await issue(server, command('fleet.pause', { role: 'analyst' }),
    command('fleet.pause', { model: 'opus', task_type: 'research' }),
    command('fleet.pause', { workflow: 'wf-a', role: 'BUILDER' }));
  runner.execute(WF_A, {});

  await issue(server, command('fleet.pause', {}));
  assert.throws(() => runner.execute(WF_B, {}), { name: 'PausedError' });
  await issue(server, command('fleet.resume', {}), command('fleet.resume', { role: 'ANALYST' }));
  runner.execute(WF_B, {});
});

test('a command delivered again runs once and is answered with its first outcome',
  async (t) => {
    const { server, engine, runner } = await setUp(t);
    const start = command('workflow.start', { workflow: 'wf-quick' });
    const [first, second] = await issue(server, start, { ...start, deliveries: 2 });

    assert.deepEqual(second, first);
    assert.equal(first.status, 'succeeded');
    assert.equal(engine.calls.length, 1);
    assert.deepEqual(runner.stats, { taken: 2, succeeded: 1, failed: 0, rejected: 0, repeated: 1 });
  });

test('a kind without a handler is rejected', async (t) => {
  const { server, runner } = await setUp(t);
  const [result] = await issue(server, command('task.submit', {}, { prompt: 'x' }));
  assert.deepEqual([result.status, result.detail],
    ['rejected', 'this orchestrator has no handler for task.submit']);
  assert.deepEqual(runner.stats, { taken: 1, succeeded: 0, failed: 0, rejected: 1, repeated: 0 });
});

test('a poll or a result answered 503 is sent again', async (t) => {
  const { server, problems } = await setUp(t);
  // Planned before the first poll reaches the stand-in: it is on its way, not yet there.
  server.answerPolls({ status: 503, body: { code: 'busy' } }, { status: 502 });
  server.answerResults({ status: 503, body: { code: 'busy' }, headers: { 'Retry-After': '0' } },
    { status: 503, body: { code: 'ledger_unavailable' } });
  const pause = command('fleet.pause', { workflow: 'wf-a' });
  const [result] = await issue(server, pause);

  assert.equal(result.status, 'succeeded');
  assert.ok(server.polls.length >= 3, `${server.polls.length} polls`);
  assert.equal(server.resultRequests, 3);
  assert.deepEqual(problems.map((problem) => [problem.status, problem.outcome]),
    [[503, 'retrying'], [503, 'retrying']]);
  assert.match(problems[0].message, /taking commands failed \(503 busy/);
  assert.match(problems[1].message, /result of command cmd-\d+ failed \(503 busy/);
});

test('a result the exporter refuses with 409 is given up, and the loop goes on', async (t) => {
  const { server, problems } = await setUp(t);
  server.answerResults({ status: 409, body: { code: 'conflict', message: 'expired' } });
  server.enqueue(command('fleet.pause', { workflow: 'wf-a' }));
  const [next] = await issue(server, command('fleet.resume', { workflow: 'wf-a' }));

  assert.equal(next.status, 'succeeded');
  assert.equal(server.resultRequests, 2);
  assert.equal(problems[0].outcome, 'given up');
  assert.match(problems[0].message, /409 conflict: expired/);
});

test('a 401 stops the loop and is reported', async (t) => {
  const { server, runner, problems } = await setUp(t);
  server.answerPolls({ status: 401, body: { code: 'unauthorized', message: 'bad token' } });
  await waitFor(() => problems.length > 0, 'the report');
  await sleep(100);

  assert.equal(server.polls.length, 1);
  assert.deepEqual([problems[0].status, problems[0].outcome], [401, 'stopped']);
  assert.match(problems[0].message, /401 unauthorized: bad token/);
  assert.deepEqual(await within(runner.stop(), 'stop'),
    { taken: 0, succeeded: 0, failed: 0, rejected: 0, repeated: 0 });
});

test('stop() cuts the long poll at once and leaves executions running', async (t) => {
  const { server, engine, runner } = await setUp(t, { waitSeconds: 30 }, 30_000);
  runner.execute(WF_A, {});
  await waitFor(() => server.polls.length === 1, 'the long poll');

  const stopping = performance.now();
  await within(runner.stop(), 'stop', 1000);
  assert.ok(performance.now() - stopping < 500);
  assert.equal(engine.calls[0].signal.aborted, false);
  assert.equal(runner.running.length, 1);
  // The command queued meanwhile stays for the next runner.
  server.enqueue(command('fleet.pause', {}));
  await sleep(20);
  assert.equal(server.results.length, 0);
});

test('options are checked', () => {
  const engine = new FakeEngine(new FakeBus());
  const options = { url: 'http://127.0.0.1:1', workflows: WORKFLOWS };
  assert.throws(() => runCommands({}, options), /`engine` must have execute/);
  assert.throws(() => runCommands(engine, { ...options, url: undefined }), /`url` is required/);
  assert.throws(() => runCommands(engine, { ...options, workflows: undefined }),
    /`workflows` is required/);
  assert.throws(() => runCommands(engine, { ...options, waitSeconds: 61 }), /`waitSeconds`/);
  assert.throws(() => runCommands(engine, { ...options, bus: {} }), /`bus` must have/);
});
