// Drives a real exporter for tests/test_orchestr8_runner.py: EXPORTER_URL and EXPORTER_TOKEN (a
// token of role ingest) name it. A stand-in engine and a forwarder share a bus, so the exporter
// sees the executions; the runner takes the exporter's commands. Starts `wf-long` (a minute
// long) through runner.execute, prints `READY <executionId>` once the runner knows the
// executionId, and runs until stdin closes. Then it stops, prints the execution's status and
// the runner's stats as one JSON line, and exits with 1 unless the execution was cancelled.

import { createInterface } from 'node:readline';

import { forwardBus } from '../forwarder.mjs';
import { runCommands } from '../runner.mjs';
import { FakeBus } from './fake-bus.mjs';
import { FakeEngine } from './fake-engine.mjs';

const { EXPORTER_URL: url, EXPORTER_TOKEN: token } = process.env;
const WF_LONG = { id: 'wf-long', durationMs: 60_000, steps: [] };
const KNOWN_WITHIN_MS = 5000;

if (url === undefined) {
  // `node --test test/` runs every file in test/: without an exporter there is nothing to drive.
  const { test } = await import('node:test');
  test('drive-runner.mjs drives the exporter that tests/test_orchestr8_runner.py starts',
    { skip: 'EXPORTER_URL is not set' }, () => {});
} else {
  await drive();
}

async function drive() {
  const bus = new FakeBus();
  const engine = new FakeEngine(bus);
  const forwarder = forwardBus(bus, { url, token, flushIntervalMs: 20 });
  const runner = runCommands(engine, {
    url, token, bus, workflows: { 'wf-long': WF_LONG }, waitSeconds: 5, maxRetryDelayMs: 1000,
    onError: (error) => console.error(`runner: ${error.message}`),
  }).start();
  const execution = runner.execute(WF_LONG, { ticket: 'T-1' });
  console.log(`READY ${await executionId(runner)}`);

  await stdinClosed();
  const stats = await runner.stop();
  engine.finishAll(); // ends it as completed if no command cancelled it: the check below fails
  const { status } = await execution;
  await forwarder.close({ timeoutMs: 10_000 });
  console.log(JSON.stringify({ status, stats }));
  if (status !== 'cancelled' || bus.swallowed.length > 0) {
    console.error(`the execution ended ${status}; listeners threw: ${bus.swallowed.join('; ')}`);
    process.exitCode = 1;
  }
}

// The runner learns it from the bus's execution.queued, a microtask after execute().
async function executionId(runner) {
  const deadline = Date.now() + KNOWN_WITHIN_MS;
  for (;;) {
    const known = runner.running.find((run) => run.workflow === WF_LONG.id)?.executionId;
    if (known) return known;
    if (Date.now() > deadline) throw new Error('the runner never learnt the executionId');
    await new Promise((resolve) => { setTimeout(resolve, 5); });
  }
}

function stdinClosed() {
  const lines = createInterface({ input: process.stdin });
  return new Promise((resolve) => {
    lines.once('close', () => {
      process.stdin.destroy();
      resolve();
    });
  });
}
