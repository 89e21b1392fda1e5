// Like @orchestr8's BoundedEventBus: on/off of EventEmitter, each listener called in a microtask
// with the bare event, and what a listener throws swallowed (kept here so tests can see it).
// Shared by forwarder.test.mjs and drive-real-exporter.mjs; it holds no test of its own.

import { EventEmitter } from 'node:events';

export class FakeBus extends EventEmitter {
  swallowed = [];

  publish(event) {
    for (const listener of this.listeners(event.type)) {
      queueMicrotask(() => {
        try {
          listener(event);
        } catch (error) {
          this.swallowed.push(error);
        }
      });
    }
  }
}
