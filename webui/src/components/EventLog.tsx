// The run's event log, newest last; follows the bottom unless the user scrolled up.

import { useEffect, useRef } from "react";
import { formatClock } from "../format";
import { flowIndexOfEvent, type RunEvent } from "../stream";

const SHOWN = 500;

function summary(event: RunEvent): string {
  const d = event.data;
  const parts: string[] = [];
  for (const key of ["concept", "concept_to_infer", "sequence", "inference_sequence", "agent", "model", "status"]) {
    if (typeof d[key] === "string" && d[key]) parts.push(String(d[key]));
  }
  const question = d.question as Record<string, unknown> | undefined;
  if (question && typeof question === "object" && typeof question.prompt === "string") {
    parts.push(`asks: ${question.prompt.trim()}`);
  }
  for (const key of ["prompt", "question", "answer", "error", "reason", "message"]) {
    if (key === "question" && question && typeof question === "object") continue;
    if (d[key] !== undefined && d[key] !== null && d[key] !== "") {
      const text = typeof d[key] === "string" ? (d[key] as string) : JSON.stringify(d[key]);
      parts.push(`${key}: ${text.length > 160 ? `${text.slice(0, 157)}…` : text}`);
    }
  }
  const response = (d.response ?? {}) as Record<string, unknown>;
  if (typeof response.model === "string") parts.push(response.model);
  if (typeof response.input_tokens === "number" || typeof response.output_tokens === "number") {
    parts.push(`${Number(response.input_tokens ?? 0)} in / ${Number(response.output_tokens ?? 0)} out tokens`);
  }
  if (typeof response.latency_ms === "number") parts.push(`${Math.round(response.latency_ms)} ms`);
  return parts.join(" · ");
}

export function EventLog({ events }: { events: RunEvent[] }) {
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);

  useEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [events]);

  const shown = events.length > SHOWN ? events.slice(-SHOWN) : events;
  return (
    <section className="panel" aria-labelledby="events-title">
      <h2 id="events-title">
        Events <span className="muted small">({events.length})</span>
      </h2>
      <div
        ref={box}
        className="event-log"
        data-testid="event-log"
        tabIndex={0}
        role="log"
        aria-label="Run events"
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {events.length > SHOWN && <div className="muted small">{events.length - SHOWN} earlier events not shown</div>}
        {shown.length === 0 && <div className="muted">No events yet.</div>}
        {shown.map((event, i) => (
          <div className={`event event-${event.type}`} key={`${event.seq}-${i}`} data-seq={event.seq} data-type={event.type}>
            <span className="event-time">{formatClock(event.ts ?? null)}</span>
            <span className="event-type">{event.type}</span>
            {flowIndexOfEvent(event) && <span className="flow-index">{flowIndexOfEvent(event)}</span>}
            <span className="event-summary">{summary(event)}</span>
          </div>
        ))}
      </div>
    </section>
  );
}
