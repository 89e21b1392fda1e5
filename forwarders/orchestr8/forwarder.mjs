// Forwards the events of an @orchestr8 event bus to orchestrator-exporter's ingest API.
//
// The bus delivers each event to its listeners in a microtask, swallows what a listener throws
// and leaves a rejected promise of an async listener unhandled. So the listener here is
// synchronous, never throws and does no I/O: it serializes the event into a bounded buffer, and
// a single sender delivers the buffer in order, one request at a time.

import { randomUUID } from 'node:crypto';
import { describeError, parseJson, refusal, retryAfterMs } from './http.mjs';

export const EVENT_TYPES = Object.freeze([
  'workflow.started', 'workflow.completed', 'workflow.failed',
  'execution.queued', 'execution.started', 'execution.cancelled',
  'step.started', 'step.completed', 'step.failed',
  'retry.attempted', 'circuitBreaker.opened', 'timeout.exceeded',
]);

// The exporter's limits for one request.
const MAX_BATCH_EVENTS = 10_000;
const MAX_BODY_BYTES = 10 * 1024 * 1024;
const FIRST_RETRY_DELAY_MS = 100;
const DROP_WARNING_INTERVAL_MS = 60_000;
const SOURCE_PATTERN = /^[A-Za-z0-9 _\-.:/@+#]{1,128}$/;
// Leaves room for `-<seq>` within the exporter's 128 printable characters of an id.
const ID_PREFIX_PATTERN = /^[^\x00-\x1f\x7f]{1,100}$/;

/** Subscribe to every event type of `bus` and forward what it emits; see README.md. */
export function forwardBus(bus, options) {
  return new Forwarder(bus, settings(options));
}

function settings(options = {}) {
  const {
    url, token, source, idPrefix = randomUUID(), batchSize = 25, flushIntervalMs = 500,
    maxBuffer = 10_000, maxRetryDelayMs = 30_000, timeoutMs = 10_000,
    fetch = globalThis.fetch, types = EVENT_TYPES, onRejected,
  } = options;
  if (typeof url !== 'string' || url === '') throw new TypeError('forwardBus: `url` is required');
  // Checked here: the exporter would refuse every event of a bad source or id.
  check(source === undefined || SOURCE_PATTERN.test(source),
    '`source` must be 1-128 characters of letters, digits and " _-.:/@+#"');
  check(typeof idPrefix === 'string' && ID_PREFIX_PATTERN.test(idPrefix),
    '`idPrefix` must be 1-100 printable characters');
  checkInteger('batchSize', batchSize, 1, MAX_BATCH_EVENTS);
  checkInteger('flushIntervalMs', flushIntervalMs, 0);
  checkInteger('maxBuffer', maxBuffer, 1);
  checkInteger('maxRetryDelayMs', maxRetryDelayMs, FIRST_RETRY_DELAY_MS);
  checkInteger('timeoutMs', timeoutMs, 1);
  check(typeof fetch === 'function', '`fetch` must be a function (Node >= 18 has one)');
  check(Array.isArray(types) && types.length > 0, '`types` must be a non-empty array');
  check(onRejected === undefined || typeof onRejected === 'function',
    '`onRejected` must be a function');
  const headers = { 'Content-Type': 'application/x-ndjson' };
  if (token) headers.Authorization = `Bearer ${token}`;
  return {
    endpoint: `${url.replace(/\/+$/, '')}/api/v1/events`, headers, source, idPrefix,
    batchSize, flushIntervalMs, maxBuffer, maxRetryDelayMs, timeoutMs, fetch, types, onRejected,
  };
}

function check(condition, message) {
  if (!condition) throw new TypeError(`forwardBus: ${message}`);
}

function checkInteger(name, value, min, max = Number.MAX_SAFE_INTEGER) {
  check(Number.isInteger(value) && value >= min && value <= max,
    `\`${name}\` must be an integer from ${min} to ${max}`);
}

class Forwarder {
  #bus;
  #options;
  #listeners = new Map();
  #seq = 0;
  #queue = []; // entries waiting to be sent, oldest first
  #batch = []; // entries being delivered: all older than the queue's
  #waiters = []; // flush() calls: {through: last seq to settle, resolve}
  #stats = { forwarded: 0, duplicates: 0, rejected: 0, dropped: 0, retries: 0 };
  #sending = false;
  #timer = null;
  #timerDue = Infinity;
  #pausing = null; // the backoff before a retry: {timer, resolve}
  #request = null; // AbortController of the request in flight
  #attempt = 0;
  #gaveUp = false;
  #closing = null;
  #lastDropWarning = -Infinity;
  #droppedSinceWarning = 0;

  constructor(bus, options) {
    if (typeof bus?.on !== 'function' || typeof bus?.off !== 'function') {
      throw new TypeError('forwardBus: `bus` must have on() and off() (an EventEmitter)');
    }
    this.#bus = bus;
    this.#options = options;
    for (const type of new Set(options.types)) {
      // The bus has no wildcard: one listener per type, which also knows the type it heard.
      const listener = (event) => this.#receive(type, event);
      this.#listeners.set(type, listener);
      bus.on(type, listener);
    }
  }

  /** Counters since creation; `buffered` is what is neither acknowledged nor given up. */
  get stats() {
    return { ...this.#stats, buffered: this.#queue.length + this.#batch.length };
  }

  /** Resolves when every event emitted so far is acknowledged or given up. */
  async flush() {
    await emittedSoFar();
    const through = this.#seq;
    if (this.#gaveUp || through < this.#lowestUnsettled()) return;
    await new Promise((resolve) => {
      this.#waiters.push({ through, resolve });
      // Someone now waits on these timers: they must keep the process alive.
      this.#timer?.ref();
      this.#pausing?.timer.ref();
      this.#wake();
    });
  }

  /** Unsubscribe, deliver what is buffered, and resolve with the final stats; what is still
   * undelivered after `timeoutMs` is given up (counted in `dropped`). */
  close({ timeoutMs = 10_000 } = {}) {
    this.#closing ??= this.#shutdown(timeoutMs);
    return this.#closing;
  }

  async #shutdown(timeoutMs) {
    let timer;
    const expired = new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs, true); });
    await emittedSoFar();
    for (const [type, listener] of this.#listeners) this.#bus.off(type, listener);
    this.#listeners.clear();
    const timedOut = await Promise.race([this.flush().then(() => false), expired]);
    clearTimeout(timer);
    if (timedOut) this.#giveUp();
    return this.stats;
  }

  #receive(type, event) {
    try {
      const entry = this.#entry(type, event);
      if (entry === null) return;
      if (this.#queue.length >= this.#options.maxBuffer) this.#dropOldest();
      this.#queue.push(entry);
      this.#wake();
    } catch (error) {
      // Not expected (the entry is built defensively), but the engine must never see it.
      this.#refuse([event], `could not be buffered: ${describeError(error)}`);
    }
  }

  #entry(type, event) {
    if (event === null || typeof event !== 'object') {
      this.#refuse([event], 'is not an object');
      return null;
    }
    const id = `${this.#options.idPrefix}-${++this.#seq}`;
    const line = toJsonLine(copyOf(type, event, id, this.#options.source));
    const bytes = Buffer.byteLength(line) + 1;
    if (bytes > MAX_BODY_BYTES) {
      this.#refuse([JSON.parse(line)], `is larger than the exporter's ${MAX_BODY_BYTES} bytes`);
      return null;
    }
    return { seq: this.#seq, line, bytes, at: performance.now() };
  }

  #dropOldest() {
    this.#queue.shift();
    this.#stats.dropped += 1;
    this.#droppedSinceWarning += 1;
    const now = performance.now();
    if (now - this.#lastDropWarning >= DROP_WARNING_INTERVAL_MS) {
      this.#lastDropWarning = now;
      console.warn(`orchestr8 forwarder: buffer full (${this.#options.maxBuffer} events); `
        + `dropped the ${this.#droppedSinceWarning} oldest, ${this.#stats.dropped} in all`);
      this.#droppedSinceWarning = 0;
    }
    this.#settle();
  }

  // Arrange for the sender to run when a batch is due: at once for a full batch or a flush,
  // else when the oldest waiting event has waited flushIntervalMs.
  #wake() {
    if (this.#sending || this.#gaveUp || this.#queue.length === 0) return;
    const wait = this.#dueNow() ? 0 : this.#queue[0].at + this.#options.flushIntervalMs
      - performance.now();
    const due = performance.now() + Math.max(0, wait);
    if (this.#timer !== null && this.#timerDue <= due) return;
    clearTimeout(this.#timer);
    this.#timerDue = due;
    this.#timer = this.#hold(setTimeout(() => {
      this.#timer = null;
      this.#timerDue = Infinity;
      void this.#send();
    }, Math.max(0, wait)));
  }

  #dueNow() {
    const queue = this.#queue;
    if (queue.length === 0) return false;
    return queue.length >= this.#options.batchSize || this.#waiters.length > 0
      || performance.now() - queue[0].at >= this.#options.flushIntervalMs;
  }

  // Background delivery does not keep the process alive; a pending flush() or close() does.
  #hold(timer) {
    if (this.#waiters.length === 0) timer.unref();
    return timer;
  }

  async #send() {
    this.#sending = true;
    while (!this.#gaveUp && (this.#batch.length > 0 || this.#dueNow())) {
      if (this.#batch.length === 0) this.#batch = this.#takeBatch();
      await this.#deliver();
    }
    this.#sending = false;
    this.#wake();
  }

  #takeBatch() {
    const queue = this.#queue;
    let count = 0;
    let bytes = 0;
    while (count < queue.length && count < this.#options.batchSize
      && bytes + queue[count].bytes <= MAX_BODY_BYTES) {
      bytes += queue[count].bytes;
      count += 1;
    }
    return queue.splice(0, count);
  }

  async #deliver() {
    let answer;
    try {
      answer = await this.#post(this.#batch);
    } catch (error) {
      answer = { failure: describeError(error) };
    }
    if (this.#gaveUp) return;
    const { status } = answer;
    if (status >= 200 && status < 300) return this.#acknowledged(answer.body);
    if (status === undefined || status === 408 || status === 429 || status >= 500) {
      return this.#retryLater(answer);
    }
    if (status === 422 && this.#refuseNamed(answer.body)) return;
    if (status === 413 && this.#batch.length > 1) return this.#split();
    this.#refuse(this.#batch.map(parsed), refusal(answer));
    this.#finishBatch();
  }

  async #post(batch) {
    const request = new AbortController();
    this.#request = request;
    const timer = setTimeout(() => request.abort(
      new Error(`no answer within ${this.#options.timeoutMs} ms`)), this.#options.timeoutMs);
    try {
      const response = await this.#options.fetch(this.#options.endpoint, {
        method: 'POST',
        headers: this.#options.headers,
        body: batch.map((entry) => `${entry.line}\n`).join(''),
        signal: request.signal,
      });
      const text = await response.text();
      return { status: response.status, body: parseJson(text), text,
        retryAfter: response.headers.get('retry-after') };
    } finally {
      clearTimeout(timer);
      this.#request = null;
    }
  }

  #acknowledged(body) {
    const duplicates = count(body?.duplicates) ?? 0;
    this.#stats.forwarded += count(body?.accepted) ?? this.#batch.length - duplicates;
    this.#stats.duplicates += duplicates;
    this.#finishBatch();
  }

  // The same batch, same ids, again: the exporter acknowledges what it already has as duplicates.
  async #retryLater(answer) {
    this.#attempt += 1;
    this.#stats.retries += 1;
    if (this.#attempt === 1) {
      console.warn(`orchestr8 forwarder: delivery failed (${answer.failure ?? refusal(answer)}); `
        + 'retrying with backoff');
    }
    const { maxRetryDelayMs } = this.#options;
    const backoff = Math.min(maxRetryDelayMs, FIRST_RETRY_DELAY_MS * 2 ** (this.#attempt - 1));
    const jittered = backoff / 2 + Math.random() * (backoff / 2);
    await this.#pause(Math.min(maxRetryDelayMs,
      Math.max(jittered, retryAfterMs(answer.retryAfter))));
  }

  #pause(ms) {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#pausing = null;
        resolve();
      };
      const timer = this.#hold(setTimeout(wake, ms));
      this.#pausing = { timer, resolve: wake };
    });
  }

  // A 422 names the invalid events by index: only they are dropped, the rest is sent again at
  // once with the same ids (nothing of the refused batch was stored).
  #refuseNamed(body) {
    const reasons = namedProblems(body?.details, this.#batch.length);
    if (reasons.size === 0) return false;
    const kept = [];
    this.#batch.forEach((entry, index) => {
      if (reasons.has(index)) this.#refuse([parsed(entry)], reasons.get(index));
      else kept.push(entry);
    });
    this.#batch = kept;
    this.#attempt = 0;
    this.#settle();
    return true;
  }

  // 413: the halves may fit; the second goes back to the front of the queue.
  #split() {
    const half = Math.ceil(this.#batch.length / 2);
    this.#queue.unshift(...this.#batch.slice(half));
    this.#batch = this.#batch.slice(0, half);
  }

  #finishBatch() {
    this.#batch = [];
    this.#attempt = 0;
    this.#settle();
  }

  #refuse(events, reason) {
    this.#stats.rejected += events.length;
    const { onRejected } = this.#options;
    try {
      if (onRejected) {
        for (const event of events) onRejected(event, reason);
      } else if (events.length === 1) {
        console.warn(`orchestr8 forwarder: event ${events[0]?.id ?? ''} (${events[0]?.type}) `
          + `refused: ${reason}`);
      } else {
        console.warn(`orchestr8 forwarder: ${events.length} events refused: ${reason}`);
      }
    } catch {
      // A failing onRejected must not stop delivery of the others.
    }
  }

  #giveUp() {
    this.#gaveUp = true;
    this.#request?.abort();
    this.#pausing?.resolve();
    clearTimeout(this.#timer);
    const lost = this.#batch.length + this.#queue.length;
    this.#stats.dropped += lost;
    this.#batch = [];
    this.#queue = [];
    if (lost > 0) console.warn(`orchestr8 forwarder: closed with ${lost} events undelivered`);
    this.#settle();
  }

  #lowestUnsettled() {
    return this.#batch[0]?.seq ?? this.#queue[0]?.seq ?? this.#seq + 1;
  }

  #settle() {
    const lowest = this.#lowestUnsettled();
    const settled = this.#waiters.filter((waiter) => waiter.through < lowest);
    this.#waiters = this.#waiters.filter((waiter) => waiter.through >= lowest);
    for (const waiter of settled) waiter.resolve();
  }
}

// The bus delivers each event in a microtask: by the next macrotask, every event emitted before
// the call has reached the listener.
function emittedSoFar() {
  return new Promise((resolve) => { setImmediate(resolve); });
}

// A snapshot of the event as the exporter wants it. `output` (up to 512 KiB of agent output)
// is dropped: the exporter counts nothing from it.
function copyOf(type, event, id, source) {
  const copy = { id, type, ...event };
  delete copy.output;
  copy.id = id;
  copy.timestamp ??= new Date().toISOString();
  if (source !== undefined) copy.source = source;
  return copy;
}

// JSON that serialization cannot fail on: Errors as {name, message} (their message is not
// enumerable, so JSON.stringify would lose it), BigInts as strings, cycles cut. A nested getter
// or toJSON that throws costs the event its non-scalar fields, not the event itself.
function toJsonLine(copy) {
  try {
    return JSON.stringify(copy, jsonSafe());
  } catch {
    return JSON.stringify(Object.fromEntries(Object.entries(copy).filter(([, value]) =>
      value === null || ['string', 'number', 'boolean'].includes(typeof value))));
  }
}

function jsonSafe() {
  const ancestors = [];
  return function replace(key, value) {
    if (typeof value === 'bigint') return value.toString();
    const plain = value instanceof Error ? { name: String(value.name),
      message: String(value.message) } : value;
    if (plain === null || typeof plain !== 'object') return plain;
    // `this` is the object holding `value`: the ancestors past it are done with.
    while (ancestors.length > 0 && ancestors.at(-1) !== this) ancestors.pop();
    if (ancestors.includes(plain)) return '[Circular]';
    ancestors.push(plain);
    return plain;
  };
}

function parsed(entry) {
  return JSON.parse(entry.line);
}

function count(value) {
  return Number.isInteger(value) && value >= 0 ? value : undefined;
}

/** index -> reason, for the problems of a 422 that name an event of the batch. */
function namedProblems(details, size) {
  const reasons = new Map();
  if (!Array.isArray(details)) return reasons;
  for (const problem of details) {
    const index = problem?.index;
    if (!Number.isInteger(index) || index < 0 || index >= size) continue;
    const reason = [problem.field, problem.reason].filter(Boolean).join(': ') || 'invalid';
    reasons.set(index, reasons.has(index) ? `${reasons.get(index)}; ${reason}` : reason);
  }
  return reasons;
}

