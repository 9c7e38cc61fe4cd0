// Follows a run's SSE stream (/api/runs/{id}/stream). Every event carries `id:` = its sequence
// number; after a dropped connection we reconnect ourselves with the last id we saw (as the
// `Last-Event-ID` query parameter, since EventSource cannot set headers), so nothing is missed or
// shown twice. The stream ends for good once a terminal run event arrives.

import { currentToken } from "./auth";
import { getRun, FINISHED_STATUSES } from "./api";

export const EVENT_TYPES = [
  "run_started",
  "step_started",
  "step_completed",
  "step_failed",
  "step_skipped",
  "llm_call",
  "question_asked",
  "question_answered",
  "run_completed",
  "run_failed",
  "run_cancelled",
  "run_waiting_input",
  "run_interrupted",
  "run_resumed",
] as const;

export const TERMINAL_EVENTS: ReadonlySet<string> = new Set([
  "run_completed",
  "run_failed",
  "run_cancelled",
  "run_interrupted",
]);

export interface RunEvent {
  seq: number;
  type: string;
  ts?: string | number | null;
  data: Record<string, unknown>;
}

export type StreamState = "connecting" | "live" | "reconnecting" | "ended";

export interface StreamHandlers {
  onEvent: (event: RunEvent) => void;
  onState: (state: StreamState) => void;
}

const MAX_BACKOFF_MS = 10_000;

export class RunStream {
  private source: EventSource | null = null;
  private lastSeq: number | null = null;
  private retryTimer: number | null = null;
  private backoffMs = 500;
  private closed = false;
  private sawEventSinceConnect = false;
  private idleReconnects = 0; // reconnects in a row that brought no event while the run was finished

  /** `after`: the last sequence number already shown (a resumed run continues its log). */
  constructor(
    private readonly runId: string,
    private readonly handlers: StreamHandlers,
    after: number | null = null,
  ) {
    this.lastSeq = after;
    this.connect("connecting");
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer !== null) window.clearTimeout(this.retryTimer);
    this.source?.close();
    this.source = null;
  }

  private url(): string {
    const params = new URLSearchParams();
    const token = currentToken();
    if (token) params.set("token", token);
    if (this.lastSeq !== null) params.set("last_event_id", String(this.lastSeq));
    const search = params.toString();
    return `/api/runs/${encodeURIComponent(this.runId)}/stream${search ? `?${search}` : ""}`;
  }

  private connect(state: StreamState): void {
    this.handlers.onState(state);
    this.sawEventSinceConnect = false;
    const source = new EventSource(this.url());
    this.source = source;
    const listener = (message: MessageEvent) => this.receive(message);
    for (const type of EVENT_TYPES) source.addEventListener(type, listener);
    source.onmessage = listener; // events sent without an `event:` line
    source.onopen = () => {
      this.backoffMs = 500;
      this.handlers.onState("live");
    };
    source.onerror = () => {
      // Take over from EventSource's own retry so the next request names the last id we saw.
      source.close();
      if (this.source === source) this.source = null;
      if (!this.closed) void this.scheduleReconnect();
    };
  }

  private receive(message: MessageEvent): void {
    const seq = Number(message.lastEventId);
    if (message.lastEventId !== "" && Number.isFinite(seq)) {
      if (this.lastSeq !== null && seq <= this.lastSeq) return; // replayed after a reconnect
      this.lastSeq = seq;
    }
    let payload: Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse(message.data as string);
      if (parsed && typeof parsed === "object") payload = parsed as Record<string, unknown>;
    } catch {
      payload = { text: message.data };
    }
    // Accept both `data: {...fields}` and `data: {type, data: {...fields}}` envelopes.
    const inner =
      payload.data && typeof payload.data === "object" && !Array.isArray(payload.data)
        ? (payload.data as Record<string, unknown>)
        : payload;
    const type = message.type !== "message" ? message.type : String(payload.type ?? payload.event ?? "message");
    this.sawEventSinceConnect = true;
    this.handlers.onEvent({
      seq: Number.isFinite(seq) && message.lastEventId !== "" ? seq : (Number(payload.seq) || 0),
      type,
      ts: (payload.ts ?? inner.ts ?? null) as RunEvent["ts"],
      data: inner,
    });
    if (TERMINAL_EVENTS.has(type)) {
      this.close();
      this.handlers.onState("ended");
    }
  }

  private async scheduleReconnect(): Promise<void> {
    this.handlers.onState("reconnecting");
    // A finished run whose stream gave us nothing new has nothing more to say; this call also
    // surfaces a missing token (401) through the token dialog, which EventSource cannot.
    try {
      const run = await getRun(this.runId);
      const idle = FINISHED_STATUSES.has(run.status) && !this.sawEventSinceConnect;
      this.idleReconnects = idle ? this.idleReconnects + 1 : 0;
      if (this.idleReconnects >= 2) {
        this.close();
        this.handlers.onState("ended");
        return;
      }
    } catch {
      // Server unreachable: keep retrying with backoff.
    }
    if (this.closed) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      if (!this.closed) this.connect("reconnecting");
    }, delay);
  }
}

/** The flow index an event is about: `flow_index`, or the step of an LLM call ("1.6.3#1"). */
export function flowIndexOfEvent(event: RunEvent): string | null {
  const { flow_index: flowIndex, step } = event.data;
  if (typeof flowIndex === "string" && flowIndex) return flowIndex;
  if (typeof step === "string" && step) return step.split("#")[0];
  return null;
}
