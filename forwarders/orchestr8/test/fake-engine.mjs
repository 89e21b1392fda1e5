// Like @orchestr8's OrchestrationEngine as the runner sees it: `execute(workflow, variables,
// signal)` emits the bus's events of an execution (`execution.queued` first, in a microtask, as
// the engine does once it has made the executionId) and resolves `{executionId, status, steps}`:
// 'completed' after `workflow.durationMs` (default 50), or 'cancelled' as soon as `signal`
// aborts. Shared by runner.test.mjs and drive-runner.mjs; it holds no test of its own.

import { randomUUID } from 'node:crypto';

export class FakeEngine {
  calls = []; // {workflow, variables, signal, executionId} of every execute()
  #bus;
  #pending = new Set(); // the finish() of each execution still running

  constructor(bus) {
    this.#bus = bus;
  }

  execute(workflow, variables, signal) {
    const executionId = randomUUID();
    this.calls.push({ workflow, variables, signal, executionId });
    queueMicrotask(() => this.#started(executionId, workflow.id));
    return new Promise((resolve) => {
      const finish = (status) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', cancel);
        this.#pending.delete(finish);
        this.#ended(executionId, workflow.id, status, signal?.reason);
        resolve({ executionId, status, steps: {} });
      };
      const cancel = () => finish('cancelled');
      const timer = setTimeout(finish, workflow.durationMs ?? 50, 'completed');
      this.#pending.add(finish);
      if (signal?.aborted) queueMicrotask(cancel);
      else signal?.addEventListener('abort', cancel, { once: true });
    });
  }

  /** Completes every execution still running, so that no timer outlives a test. */
  finishAll() {
    for (const finish of [...this.#pending]) finish('completed');
  }

  #started(executionId, workflowId) {
    this.#bus.publish({ type: 'execution.queued', executionId, workflowId });
    this.#bus.publish({ type: 'workflow.started', workflowId, timestamp: Date.now() });
    this.#bus.publish({ type: 'execution.started', executionId });
  }

  #ended(executionId, workflowId, status, reason) {
    if (status === 'cancelled') {
      this.#bus.publish({ type: 'execution.cancelled', executionId,
        reason: String(reason?.message ?? 'Execution cancelled') });
    } else {
      this.#bus.publish({ type: 'workflow.completed', workflowId, duration: 1 });
    }
  }
}
