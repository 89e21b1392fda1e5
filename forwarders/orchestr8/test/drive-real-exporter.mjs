// Drives a real exporter for tests/test_orchestr8_forwarder.py: EXPORTER_URL and EXPORTER_TOKEN
// name it. Emits the events of three workflow executions on a bus like @orchestr8's, forwards
// them, and prints the forwarder's stats as one JSON line. Then, after a line on stdin (the
// test reads the exporter's metrics meanwhile), forwards the same events again through a second
// forwarder with the same id prefix, as a restarted process resending its events would, and
// prints the stats again.

import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';

import { forwardBus } from '../forwarder.mjs';
import { FakeBus } from './fake-bus.mjs';

const { EXPORTER_URL: url, EXPORTER_TOKEN: token } = process.env;

if (url === undefined) {
  // `node --test test/` runs every file in test/: without an exporter there is nothing to drive.
  const { test } = await import('node:test');
  test('drive-real-exporter.mjs drives the exporter that tests/test_orchestr8_forwarder.py '
    + 'starts', { skip: 'EXPORTER_URL is not set' }, () => {});
} else {
  const idPrefix = randomUUID();
  console.log(JSON.stringify(await forwardAll(idPrefix)));
  await nextLine();
  console.log(JSON.stringify(await forwardAll(idPrefix)));
}

async function forwardAll(idPrefix) {
  const bus = new FakeBus();
  const forwarder = forwardBus(bus, { url, token, idPrefix });
  for (const event of executions()) {
    bus.publish(event);
    // An engine emits between awaits: each event is delivered before the next is emitted.
    await new Promise((resolve) => { setImmediate(resolve); });
  }
  const stats = await forwarder.close({ timeoutMs: 20_000 });
  if (bus.swallowed.length > 0) {
    throw new Error(`a listener threw: ${bus.swallowed.join('; ')}`);
  }
  return stats;
}

// Three executions, one after another, in @orchestr8's order of events.
function executions() {
  const timeout = Object.assign(new Error('Operation timed out after 30000ms'),
    { name: 'TIMEOUT' });
  return [
    ...started('exec-1', 'wf-demo'),
    ...completedStep('exec-1', 's1'),
    ...completedStep('exec-1', 's2'),
    ...completedStep('exec-1', 's3'),
    { type: 'workflow.completed', workflowId: 'wf-demo', duration: 1520 },

    ...started('exec-2', 'wf-demo'),
    ...completedStep('exec-2', 's1'),
    { type: 'step.started', stepId: 's2', executionId: 'exec-2' },
    { type: 'step.started', stepId: 's3', executionId: 'exec-2' },
    { type: 'retry.attempted', stepId: 's2', attempt: 1, delay: 100 },
    { type: 'step.failed', stepId: 's2', error: timeout, retryable: true },
    { type: 'circuitBreaker.opened', key: 'agent-s2', failures: 5 },
    { type: 'workflow.failed', workflowId: 'wf-demo', error: timeout },

    ...started('exec-3', 'wf-other'),
    { type: 'step.started', stepId: 'x1', executionId: 'exec-3' },
    { type: 'execution.cancelled', executionId: 'exec-3', reason: 'Cancelled by the user' },
  ];
}

function started(executionId, workflowId) {
  return [
    { type: 'execution.queued', executionId, workflowId },
    { type: 'workflow.started', workflowId, timestamp: Date.now() },
    { type: 'execution.started', executionId },
  ];
}

function completedStep(executionId, stepId) {
  return [
    { type: 'step.started', stepId, executionId },
    { type: 'step.completed', stepId, output: { text: `${stepId} done`, tokens: 1234n } },
  ];
}

// The line that says "resend now"; the end of stdin says it too.
function nextLine() {
  const lines = createInterface({ input: process.stdin });
  return new Promise((resolve) => {
    lines.once('line', () => lines.close());
    lines.once('close', () => {
      process.stdin.destroy();
      resolve();
    });
  });
}
