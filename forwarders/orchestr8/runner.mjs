// Carries out orchestrator-exporter's commands for an @orchestr8 engine.
//
// The engine is in-process only: `engine.execute(workflow, variables, signal)` resolves when the
// execution has ended, cancelling is aborting the caller's signal, and it keeps no registry of
// executions and has no pause. So the application starts executions through `runner.execute`,
// which asks an admission gate (pause) and keeps each execution's AbortController (cancel), and
// a loop long-polls the exporter for commands, runs each command id once and reports its result.

import { describeError, parseJson, refusal, retryAfterMs } from './http.mjs';

export const KINDS = Object.freeze([
  'workflow.start', 'workflow.cancel', 'step.retry', 'fleet.pause', 'fleet.resume',
]);

// Delivery is at least once: this many outcomes are kept to answer a command delivered again.
const REMEMBERED = 10_000;
const MAX_WAIT_SECONDS = 60;
const FIRST_RETRY_DELAY_MS = 100;
// A long poll answers within `wait` seconds: only past this margin is its answer counted lost.
const ANSWER_MARGIN_MS = 10_000;
const RESULT_TIMEOUT_MS = 10_000;

/** What `runner.execute` throws while a paused scope covers the workflow. */
export class PausedError extends Error {
  constructor(workflowId, scope) {
    super(`workflow ${workflowId} is paused (scope ${JSON.stringify(scope)})`);
    this.name = 'PausedError';
    this.scope = scope;
  }
}

/** A runner that takes the exporter's commands for `engine`; see README.md. */
export function runCommands(engine, options) {
  if (typeof engine?.execute !== 'function') {
    throw new TypeError('runCommands: `engine` must have execute(workflow, variables, signal)');
  }
  return new CommandRunner(engine, settings(options));
}

function settings(options = {}) {
  const {
    url, token, workflows, bus, waitSeconds = 30, maxRetryDelayMs = 30_000,
    fetch = globalThis.fetch, onError, source = 'default',
  } = options;
  if (typeof url !== 'string' || url === '') throw new TypeError('runCommands: `url` is required');
  check(typeof workflows === 'function' || (workflows !== null && typeof workflows === 'object'),
    '`workflows` is required: a function of a workflow id, or a Map or object of definitions');
  check(bus === undefined || (typeof bus?.on === 'function' && typeof bus?.off === 'function'),
    '`bus` must have on() and off() (an EventEmitter)');
  check(typeof waitSeconds === 'number' && waitSeconds > 0 && waitSeconds <= MAX_WAIT_SECONDS,
    `\`waitSeconds\` must be a number above 0, at most ${MAX_WAIT_SECONDS}`);
  check(Number.isInteger(maxRetryDelayMs) && maxRetryDelayMs >= FIRST_RETRY_DELAY_MS,
    `\`maxRetryDelayMs\` must be an integer of at least ${FIRST_RETRY_DELAY_MS}`);
  check(typeof fetch === 'function', '`fetch` must be a function (Node >= 18 has one)');
  check(onError === undefined || typeof onError === 'function', '`onError` must be a function');
  // The exporter hands each orchestrator instance the commands whose target names its source.
  check(typeof source === 'string' && source.length > 0 && source.length <= 128,
    '`source` must be a name of 1 to 128 characters');
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  return {
    base: `${url.replace(/\/+$/, '')}/api/v1/commands`, headers, workflows, bus, waitSeconds,
    maxRetryDelayMs, fetch, onError, source,
  };
}

function check(condition, message) {
  if (!condition) throw new TypeError(`runCommands: ${message}`);
}

// fleet.pause / fleet.resume. A workflow has only its id to be matched by: a scope's role, model
// or task_type is never known for it, so a scope naming one never covers a workflow.
class Gate {
  #paused = new Map(); // canonical JSON of a scope -> the scope

  pause(target) {
    const scope = scopeOf(target);
    this.#paused.set(JSON.stringify(scope), scope);
  }

  resume(target) {
    this.#paused.delete(JSON.stringify(scopeOf(target)));
  }

  /** The first paused scope every key of which matches the workflow (an empty one: all). */
  blocking(workflowId) {
    for (const scope of this.#paused.values()) {
      if (Object.entries(scope).every(([key, value]) => key === 'workflow'
        && value === workflowId)) return scope;
    }
    return undefined;
  }
}

// As the exporter's Python gate: `source` names where the command goes, not what it pauses, and
// roles are compared upper-case. Sorted, so that pause and resume of one scope are one key.
function scopeOf(target) {
  const entries = Object.entries(target ?? {}).filter(([key]) => key !== 'source')
    .map(([key, value]) => [key, key === 'role' ? String(value).toUpperCase() : String(value)]);
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : 1)));
}

class CommandRunner {
  #engine;
  #options;
  #gate = new Gate();
  #handlers;
  #seq = 0;
  #runs = new Map(); // runner-side id -> execution still running
  #waiting = new Map(); // workflow id -> running executions whose executionId is not known yet
  #byExecution = new Map(); // executionId -> execution still running
  #ended = new Map(); // executionId -> {workflow, variables} of the last REMEMBERED that ended
  #done = new Map(); // command id -> outcome, of the last REMEMBERED commands run
  #stats = { taken: 0, succeeded: 0, failed: 0, rejected: 0, repeated: 0 };
  #loop = null;
  #stopping = false;
  #poll = null; // AbortController of the long poll in flight
  #wake = null; // ends the backoff being waited

  constructor(engine, options) {
    this.#engine = engine;
    this.#options = options;
    this.#handlers = new Map([
      ['workflow.start', (command) => this.#start(command)],
      ['workflow.cancel', (command) => this.#cancel(command)],
      ['step.retry', (command) => this.#retry(command)],
      ['fleet.pause', (command) => this.#pause(command)],
      ['fleet.resume', (command) => this.#resume(command)],
    ]);
    // The bus calls listeners in a microtask and swallows what they throw: this one never does.
    options.bus?.on('execution.queued', (event) => {
      try {
        this.#queued(event);
      } catch {
        // Not expected (the event is read defensively), but the engine must never see it.
      }
    });
  }

  /** Counters since creation: commands taken, run (succeeded, failed), and answered again. */
  get stats() {
    return { ...this.#stats };
  }

  /** The executions started through execute() that still run: {workflow, executionId|null}. */
  get running() {
    return [...this.#runs.values()].map((run) => ({
      workflow: run.workflow?.id, executionId: run.executionId ?? null,
    }));
  }

  /** Instead of `engine.execute(workflow, variables)`: the engine's promise, or a PausedError
   * thrown at once when a paused scope covers the workflow. */
  execute(workflow, variables) {
    const scope = this.#gate.blocking(workflow?.id);
    if (scope !== undefined) throw new PausedError(workflow?.id, scope);
    // Registered before the engine runs, in case its bus calls listeners synchronously.
    const run = this.#register(workflow, variables);
    let execution;
    try {
      execution = this.#engine.execute(workflow, variables, run.controller.signal);
    } catch (error) {
      this.#finished(run, undefined);
      throw error;
    }
    Promise.resolve(execution).then((result) => this.#finished(run, result?.executionId),
      () => this.#finished(run, undefined));
    return execution;
  }

  /** Start taking commands (again, after stop() or a refused token). */
  start() {
    if (this.#loop === null) {
      this.#stopping = false;
      this.#loop = this.#takeCommands()
        .catch((error) => this.#problem(`stopped: ${describeError(error)}`, { outcome: 'stopped' }))
        .finally(() => { this.#loop = null; });
    }
    return this;
  }

  /** Stop taking commands; executions that run go on. Resolves with the stats. */
  async stop() {
    this.#stopping = true;
    this.#poll?.abort(new Error('the runner stopped'));
    this.#wake?.();
    await this.#loop;
    return this.stats;
  }

  #register(workflow, variables) {
    const run = { id: ++this.#seq, workflow, variables, controller: new AbortController() };
    this.#runs.set(run.id, run);
    const waiting = this.#waiting.get(workflow?.id) ?? [];
    waiting.push(run);
    this.#waiting.set(workflow?.id, waiting);
    return run;
  }

  // execution.queued is the one moment the engine tells an executionId before the execution
  // ends. Executions of a workflow are queued in the order they were started: the oldest
  // running one still unnamed gets it.
  #queued(event) {
    if (event?.executionId === undefined || event.executionId === null) return;
    const executionId = String(event.executionId);
    if (this.#byExecution.has(executionId) || this.#ended.has(executionId)) return;
    const waiting = this.#waiting.get(event.workflowId);
    const run = waiting?.shift();
    if (run === undefined) return;
    if (waiting.length === 0) this.#waiting.delete(event.workflowId);
    run.executionId = executionId;
    this.#byExecution.set(executionId, run);
  }

  // The result names the execution even without a bus: step.retry can find an ended one.
  #finished(run, resultId) {
    this.#runs.delete(run.id);
    const waiting = this.#waiting.get(run.workflow?.id) ?? [];
    if (waiting.includes(run)) waiting.splice(waiting.indexOf(run), 1);
    if (waiting.length === 0) this.#waiting.delete(run.workflow?.id);
    const executionId = run.executionId ?? (resultId == null ? undefined : String(resultId));
    if (executionId === undefined) return;
    if (this.#byExecution.get(executionId) === run) this.#byExecution.delete(executionId);
    remember(this.#ended, executionId, { workflow: run.workflow, variables: run.variables });
  }

  async #takeCommands() {
    let failures = 0;
    while (!this.#stopping) {
      const query = `wait=${this.#options.waitSeconds}&source=${encodeURIComponent(this.#options.source)}`;
      const answer = await this.#call('GET', `/next?${query}`,
        { timeoutMs: this.#options.waitSeconds * 1000 + ANSWER_MARGIN_MS, poll: true });
      if (answer.status === 200 && isCommand(answer.body)) {
        // Delivered to this runner, stopping or not: otherwise it waits a minute to come again.
        failures = 0;
        await this.#carryOut(answer.body);
      } else if (answer.status === 204) {
        failures = 0;
      } else if (this.#stopping || this.#tokenRefused(answer)) {
        break;
      } else {
        failures += 1;
        await this.#pollFailed(answer, failures);
      }
    }
  }

  // Every poll would be refused alike: only a new token (and start()) helps.
  #tokenRefused(answer) {
    if (answer.status !== 401 && answer.status !== 403) return false;
    this.#problem(`stopped: the exporter refused the token (${refusal(answer)})`,
      { status: answer.status, outcome: 'stopped' });
    return true;
  }

  // A network error, a 5xx, or an answer that is no command: polled again after a backoff.
  #pollFailed(answer, failures) {
    if (failures === 1) {
      this.#problem(`taking commands failed (${describe(answer)}); retrying with backoff`,
        { status: answer.status, outcome: 'retrying' });
    }
    return this.#backoff(failures, answer.retryAfter);
  }

  async #carryOut(command) {
    this.#stats.taken += 1;
    const outcome = await this.#run(command);
    await this.#answer(command.id, outcome);
  }

  async #run(command) {
    const id = String(command.id);
    const earlier = this.#done.get(id);
    if (earlier !== undefined) {
      this.#stats.repeated += 1;
      return earlier;
    }
    const outcome = await this.#outcome(command);
    remember(this.#done, id, outcome);
    this.#stats[outcome.status] += 1;
    return outcome;
  }

  async #outcome(command) {
    const handler = this.#handlers.get(command.kind);
    if (handler === undefined) {
      return { status: 'rejected', detail: `this orchestrator has no handler for ${command.kind}` };
    }
    try {
      return { status: 'succeeded', detail: await handler(command) };
    } catch (error) {
      // The engine's or the gate's refusal is the command's result, not the runner's failure.
      return { status: 'failed', detail: String(error?.message || error?.name || error) };
    }
  }

  // Until the exporter has it: an unreported command would be delivered again after a minute.
  async #answer(id, outcome) {
    const path = `/${encodeURIComponent(id)}/result`;
    const body = JSON.stringify(outcome);
    for (let failures = 1; ; failures += 1) {
      const answer = await this.#call('POST', path, { body, timeoutMs: RESULT_TIMEOUT_MS });
      if (answer.status >= 200 && answer.status < 300) return;
      if (!retryable(answer) || this.#stopping) {
        const why = this.#stopping && retryable(answer) ? 'the runner stopped' : refusal(answer);
        this.#problem(`the result of command ${id} was not recorded (${why}); given up`,
          { status: answer.status, outcome: 'given up' });
        return;
      }
      if (failures === 1) {
        this.#problem(`reporting the result of command ${id} failed (${describe(answer)}); `
          + 'retrying with backoff', { status: answer.status, outcome: 'retrying' });
      }
      await this.#backoff(failures, answer.retryAfter);
    }
  }

  async #call(method, path, { body, timeoutMs, poll = false }) {
    const request = new AbortController();
    // Only the long poll is cut by stop(): a result on its way is let through.
    if (poll) this.#poll = request;
    const timer = setTimeout(() => request.abort(new Error(`no answer within ${timeoutMs} ms`)),
      timeoutMs);
    const { headers } = this.#options;
    try {
      const response = await this.#options.fetch(`${this.#options.base}${path}`, {
        method, body, signal: request.signal,
        headers: body === undefined ? headers : { ...headers, 'Content-Type': 'application/json' },
      });
      const text = await response.text();
      return { status: response.status, body: parseJson(text), text,
        retryAfter: response.headers.get('retry-after') };
    } catch (error) {
      return { failure: describeError(error) };
    } finally {
      clearTimeout(timer);
      if (poll) this.#poll = null;
    }
  }

  #backoff(failures, retryAfter) {
    const { maxRetryDelayMs } = this.#options;
    const backoff = Math.min(maxRetryDelayMs, FIRST_RETRY_DELAY_MS * 2 ** (failures - 1));
    const jittered = backoff / 2 + Math.random() * (backoff / 2);
    return this.#sleep(Math.min(maxRetryDelayMs, Math.max(jittered, retryAfterMs(retryAfter))));
  }

  #sleep(ms) {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wake = wake;
    });
  }

  // workflow.start: succeeds once the execution has started; it runs on after the answer.
  async #start(command) {
    const workflowId = command.target?.workflow;
    const workflow = await this.#definition(workflowId);
    this.#launch(workflow, command.args ?? {}, command.id);
    return { started: true, workflow: workflowId };
  }

  async #definition(workflowId) {
    const { workflows } = this.#options;
    let workflow;
    if (typeof workflows === 'function') workflow = await workflows(workflowId);
    else if (workflows instanceof Map) workflow = workflows.get(workflowId);
    else if (Object.hasOwn(workflows, workflowId)) workflow = workflows[workflowId];
    if (workflow === undefined || workflow === null) {
      throw new Error(`no workflow ${workflowId} is known here`);
    }
    return workflow;
  }

  // Nobody awaits an execution a command started: its rejection is reported, not left unhandled.
  #launch(workflow, variables, commandId) {
    this.execute(workflow, variables).then(undefined, (error) => this.#problem(
      `the execution of ${workflow.id} started by command ${commandId} failed: `
      + describeError(error), { outcome: 'given up' }));
  }

  #cancel(command) {
    const runId = String(command.target?.run_id);
    const run = this.#byExecution.get(runId);
    if (run === undefined) throw new Error(this.#unknownRun(runId));
    run.controller.abort(Object.assign(new Error(`cancelled by command ${command.id}`),
      { name: 'AbortError' }));
    return { cancelled: true, run_id: runId };
  }

  #unknownRun(runId) {
    if (this.#ended.has(runId)) return `no execution ${runId} runs here: it has ended`;
    if (this.#options.bus === undefined) {
      return `no execution ${runId} runs here (without the \`bus\` option this runner learns `
        + 'an executionId only when its execution ends)';
    }
    return `no execution ${runId} runs here`;
  }

  // The engine's retry is declarative: what it can do is run the whole workflow again, with the
  // definition and variables the run was started with, as a new execution.
  #retry(command) {
    const runId = String(command.target?.run_id);
    const run = this.#byExecution.get(runId) ?? this.#ended.get(runId);
    if (run === undefined) throw new Error(`no execution ${runId} ran here`);
    this.#launch(run.workflow, run.variables, command.id);
    return { retried: true, run_id: runId, workflow: run.workflow?.id };
  }

  #pause(command) {
    this.#gate.pause(command.target);
    return { paused: command.target ?? {} };
  }

  #resume(command) {
    this.#gate.resume(command.target);
    return { resumed: command.target ?? {} };
  }

  // onError, or a warning: never thrown into the loop.
  #problem(message, { status, outcome }) {
    const error = Object.assign(new Error(message),
      { name: 'CommandRunnerError', status, outcome });
    try {
      if (this.#options.onError) this.#options.onError(error);
      else console.warn(`orchestr8 runner: ${message}`);
    } catch {
      // A failing onError must not stop the loop.
    }
  }
}

function isCommand(body) {
  return body !== null && typeof body === 'object' && typeof body.kind === 'string'
    && (typeof body.id === 'string' || typeof body.id === 'number');
}

// Insertion order is age: the oldest entry goes first.
function remember(map, key, value) {
  map.delete(key);
  map.set(key, value);
  if (map.size > REMEMBERED) map.delete(map.keys().next().value);
}

function retryable({ status }) {
  return status === undefined || status === 408 || status === 429 || status >= 500;
}

function describe(answer) {
  return answer.failure ?? refusal(answer);
}

