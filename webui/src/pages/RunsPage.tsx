// Run history, filtered by plan and state (kept in the URL so a filter can be shared).

import { useEffect } from "react";
import { FINISHED_STATUSES, listPlans, listRuns, RUN_STATUSES } from "../api";
import { ErrorBox } from "../components/ErrorBox";
import { StatusBadge } from "../components/StatusBadge";
import { formatDuration, formatNumber, formatTime, runDuration, shortId, totalTokens } from "../format";
import { href, navigate } from "../router";
import { useAsync } from "../useAsync";

const PAGE_SIZE = 25;
const REFRESH_MS = 3000;

export function RunsPage({ params }: { params: URLSearchParams }) {
  const planId = params.get("plan_id") ?? "";
  const status = params.get("status") ?? "";
  const offset = Math.max(0, Number(params.get("offset") ?? 0) || 0);
  const plans = useAsync(listPlans, []);
  const runs = useAsync(
    () => listRuns({ plan_id: planId, status, limit: PAGE_SIZE, offset }),
    [planId, status, offset],
  );

  const anyActive = runs.data?.runs.some((r) => !FINISHED_STATUSES.has(r.status)) ?? false;
  useEffect(() => {
    if (!anyActive) return;
    const timer = window.setInterval(runs.reload, REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [anyActive, runs.reload]);

  const setFilter = (next: Record<string, string>) => navigate("/runs", { plan_id: planId, status, ...next });
  const page = runs.data?.runs ?? [];
  const total = runs.data?.total ?? null;
  const hasNext = total !== null ? offset + PAGE_SIZE < total : page.length === PAGE_SIZE;

  return (
    <div className="page">
      <h1>Runs</h1>
      <form className="filters" aria-label="Filter runs" onSubmit={(e) => e.preventDefault()}>
        <label>
          Plan
          <select name="plan_id" value={planId} onChange={(e) => setFilter({ plan_id: e.target.value })}>
            <option value="">All plans</option>
            {planId && !plans.data?.some((p) => p.id === planId) && <option value={planId}>{planId}</option>}
            {plans.data?.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          State
          <select name="status" value={status} onChange={(e) => setFilter({ status: e.target.value })}>
            <option value="">Any state</option>
            {RUN_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replace("_", " ")}
              </option>
            ))}
          </select>
        </label>
        <button type="button" onClick={runs.reload}>
          Refresh
        </button>
      </form>
      <ErrorBox error={runs.error} title="Could not load runs" />
      {runs.loading && !runs.data && <p className="muted">Loading…</p>}
      {runs.data && page.length === 0 && <p className="muted">No runs match.</p>}
      {page.length > 0 && (
        <table className="runs-table" data-testid="runs-table">
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Plan</th>
              <th scope="col">State</th>
              <th scope="col">Started</th>
              <th scope="col">Duration</th>
              <th scope="col">Tokens</th>
              <th scope="col">Agent</th>
            </tr>
          </thead>
          <tbody>
            {page.map((run) => (
              <tr key={run.run_id} data-run-id={run.run_id}>
                <td data-label="Run">
                  <a href={href(`/runs/${encodeURIComponent(run.run_id)}`)} title={run.run_id}>
                    {shortId(run.run_id)}
                  </a>
                </td>
                <td data-label="Plan">
                  {run.plan_id}
                  {run.plan_version ? <span className="muted"> v{run.plan_version}</span> : null}
                </td>
                <td data-label="State">
                  <StatusBadge status={run.status} />
                </td>
                <td data-label="Started">{formatTime(run.started_at ?? run.created_at)}</td>
                <td data-label="Duration">{formatDuration(runDuration(run))}</td>
                <td data-label="Tokens">{formatNumber(totalTokens(run.usage))}</td>
                <td data-label="Agent">{run.agent ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {(offset > 0 || hasNext) && (
        <nav className="pager" aria-label="Pages">
          <button
            type="button"
            disabled={offset === 0}
            onClick={() => navigate("/runs", { plan_id: planId, status, offset: String(Math.max(0, offset - PAGE_SIZE)) })}
          >
            ← Newer
          </button>
          <span className="muted">
            {offset + 1}–{offset + page.length}
            {total !== null ? ` of ${total}` : ""}
          </span>
          <button
            type="button"
            disabled={!hasNext}
            onClick={() => navigate("/runs", { plan_id: planId, status, offset: String(offset + PAGE_SIZE) })}
          >
            Older →
          </button>
        </nav>
      )}
    </div>
  );
}
