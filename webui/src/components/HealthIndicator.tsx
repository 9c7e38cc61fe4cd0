// Server health (/health) and readiness (/ready), polled; the details open on click.

import { useEffect, useState } from "react";
import { getHealth, getReady, type Health, type Readiness } from "../api";

const POLL_MS = 15_000;

interface CheckRow {
  name: string;
  ok: boolean;
  message: string;
}

function checkRows(checks: Readiness["checks"] | undefined): CheckRow[] {
  if (!checks) return [];
  const entries: Array<[string, unknown]> = Array.isArray(checks)
    ? checks.map((c, i) => [String(c.name ?? i), c])
    : Object.entries(checks);
  return entries.map(([name, value]) => {
    if (typeof value === "boolean") return { name, ok: value, message: "" };
    const fields = (value ?? {}) as Record<string, unknown>;
    const ok = fields.ok ?? fields.ready ?? fields.healthy ?? (fields.status === "ok" || fields.status === "pass");
    return {
      name,
      ok: Boolean(ok),
      message: String(fields.message ?? fields.detail ?? fields.reason ?? ""),
    };
  });
}

export function HealthIndicator() {
  const [health, setHealth] = useState<Health | null>(null);
  const [ready, setReady] = useState<Readiness | null>(null);
  const [down, setDown] = useState(false);
  const [open, setOpen] = useState(false);

  useEffect(() => {
    let alive = true;
    const poll = async () => {
      const [h, r] = await Promise.allSettled([getHealth(), getReady()]);
      if (!alive) return;
      setHealth(h.status === "fulfilled" ? h.value : null);
      setReady(r.status === "fulfilled" ? r.value : null);
      setDown(h.status === "rejected");
    };
    void poll();
    const timer = window.setInterval(() => void poll(), POLL_MS);
    return () => {
      alive = false;
      window.clearInterval(timer);
    };
  }, []);

  useEffect(() => {
    if (!open) return;
    const close = (event: KeyboardEvent) => {
      if (event.key === "Escape") setOpen(false);
    };
    window.addEventListener("keydown", close);
    return () => window.removeEventListener("keydown", close);
  }, [open]);

  const state = down ? "down" : !health ? "unknown" : ready?.ready ? "ready" : "degraded";
  const label = { down: "Server unreachable", unknown: "Checking…", ready: "Ready", degraded: "Not ready" }[state];
  const rows = checkRows(ready?.checks);

  return (
    <div className="health">
      <button
        type="button"
        className={`health-button health-${state}`}
        aria-expanded={open}
        aria-controls="health-details"
        onClick={() => setOpen(!open)}
        title={label}
      >
        <span className="dot" aria-hidden="true" />
        <span className="health-label">{label}</span>
      </button>
      {open && (
        <div id="health-details" className="health-details">
          <dl>
            <dt>Status</dt>
            <dd>{health?.status ?? "—"}</dd>
            <dt>Version</dt>
            <dd>{health?.version ?? "—"}</dd>
            <dt>Plans</dt>
            <dd>{health?.plans_count ?? "—"}</dd>
            <dt>Active runs</dt>
            <dd>{health?.active_runs ?? "—"}</dd>
          </dl>
          {rows.length > 0 && (
            <ul className="checks">
              {rows.map((row) => (
                <li key={row.name} className={row.ok ? "ok" : "bad"}>
                  <span aria-hidden="true">{row.ok ? "✓" : "✗"}</span> {row.name}
                  {row.message && <span className="muted"> — {row.message}</span>}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </div>
  );
}
