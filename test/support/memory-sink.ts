import type { CloudEvent, EventSink } from "langchain-openmeter";

/** An EventSink that keeps what it is given, for tests of the handler alone. */
export class MemorySink implements EventSink {
  readonly events: CloudEvent[] = [];
  closed = false;

  enqueue(events: CloudEvent | readonly CloudEvent[]): void {
    if (this.closed) throw new Error("sink is shut down");
    if (Array.isArray(events)) this.events.push(...events);
    else this.events.push(events as CloudEvent);
  }
  async flush(): Promise<void> {}
  async shutdown(): Promise<void> {
    this.closed = true;
  }

  byId(id: string): CloudEvent | undefined {
    return this.events.find((event) => event.id === id);
  }
}

/** A logger that records, so tests can assert what the user was told. */
export function recordingLogger() {
  const warnings: string[] = [];
  const errors: string[] = [];
  return { warnings, errors, logger: { warn: (m: string) => void warnings.push(m), error: (m: string) => void errors.push(m) } };
}
