// Start a run: one field per manifest input (blank keeps the plan's embedded value), the agent,
// and an optional cycle limit.

import { useState, type FormEvent } from "react";
import { getPlan, getPlanGraph, listAgents, startRun, type Agent, type Concept, type Plan } from "../api";
import { ErrorBox } from "../components/ErrorBox";
import { href, navigate } from "../router";
import { useAsync } from "../useAsync";

/** JSON objects and lists are sent as JSON; anything else as the text typed. */
function parseInput(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return text;
    }
  }
  return text;
}

function defaultAgent(agents: Agent[], plan: Plan): string {
  const available = agents.filter((a) => a.available);
  return (
    available.find((a) => a.default)?.name ??
    available.find((a) => a.name === plan.defaultAgent)?.name ??
    available[0]?.name ??
    ""
  );
}

function shortValue(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 200 ? `${text.slice(0, 197)}…` : text;
}

function LaunchForm({ plan, agents, concepts }: { plan: Plan; agents: Agent[]; concepts: Map<string, Concept> }) {
  const [values, setValues] = useState<Record<string, string>>({});
  const [agent, setAgent] = useState(() => defaultAgent(agents, plan));
  const [maxCycles, setMaxCycles] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const inputNames = Object.keys(plan.inputs);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const inputs: Record<string, unknown> = {};
    for (const name of inputNames) if ((values[name] ?? "").trim() !== "") inputs[name] = parseInput(values[name]);
    try {
      const run = await startRun({
        plan_id: plan.id,
        version: plan.version || undefined,
        inputs: Object.keys(inputs).length ? inputs : undefined,
        agent: agent || undefined,
        max_cycles: maxCycles ? Number(maxCycles) : undefined,
      });
      navigate(`/runs/${encodeURIComponent(run.run_id)}`);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <form className="launch-form" onSubmit={(e) => void submit(e)} aria-label="Start a run">
      <fieldset>
        <legend>Inputs</legend>
        {inputNames.length === 0 && <p className="muted">This plan takes no inputs.</p>}
        {inputNames.map((name, i) => {
          const spec = plan.inputs[name];
          const id = `input-${i}`;
          const embeddedValue = concepts.get(name)?.reference_data;
          const hasDefault = spec?.source === "embedded" || (embeddedValue !== undefined && embeddedValue !== null);
          const required = spec?.required === true && !hasDefault;
          return (
            <div className="field" key={name}>
              <label htmlFor={id}>
                <code>{name}</code>
                {spec?.type && <span className="muted"> {String(spec.type)}</span>}
                {required && <span className="error-text"> (required)</span>}
              </label>
              {spec?.description && <p className="muted small">{String(spec.description)}</p>}
              {embeddedValue !== undefined && embeddedValue !== null && (
                <p className="muted small">
                  Plan value: <code>{shortValue(embeddedValue)}</code>
                </p>
              )}
              <textarea
                id={id}
                name={name}
                rows={2}
                required={required}
                value={values[name] ?? ""}
                placeholder={
                  hasDefault ? "Leave blank to use the plan's value; text, or JSON for a list or {data, axes}" : "Text, or JSON for a list or {data, axes}"
                }
                onChange={(e) => setValues({ ...values, [name]: e.target.value })}
              />
            </div>
          );
        })}
      </fieldset>
      <fieldset>
        <legend>Execution</legend>
        <div className="field">
          <label htmlFor="agent">Agent</label>
          <select id="agent" name="agent" value={agent} onChange={(e) => setAgent(e.target.value)}>
            {agents.length === 0 && <option value="">(server default)</option>}
            {agents.map((a) => (
              <option key={a.name} value={a.name} disabled={!a.available}>
                {a.name}
                {a.provider ? ` — ${a.provider}` : ""}
                {a.model ? ` / ${a.model}` : ""}
                {a.default ? " (default)" : ""}
                {!a.available ? ` — unavailable${a.reason ? `: ${a.reason}` : ""}` : ""}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="max-cycles">Max cycles</label>
          <input
            id="max-cycles"
            name="max_cycles"
            type="number"
            min={1}
            inputMode="numeric"
            placeholder="server default"
            value={maxCycles}
            onChange={(e) => setMaxCycles(e.target.value)}
          />
        </div>
      </fieldset>
      <ErrorBox error={error} title="Could not start the run" />
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Starting…" : "Start run"}
        </button>
      </div>
    </form>
  );
}

export function RunLaunchPage({ planId }: { planId: string }) {
  const plan = useAsync(() => getPlan(planId), [planId]);
  const agents = useAsync(listAgents, []);
  // The graph's concepts hold the values embedded in the plan, shown as each input's default.
  const graph = useAsync(() => getPlanGraph(planId), [planId]);
  const concepts = new Map((graph.data?.concepts ?? []).map((c) => [c.concept_name, c]));
  return (
    <div className="page">
      <nav className="crumbs" aria-label="Breadcrumb">
        <a href={href("/plans")}>Plans</a> /{" "}
        <a href={href(`/plans/${encodeURIComponent(planId)}`)}>{plan.data?.name ?? planId}</a> / <span>Run</span>
      </nav>
      <h1>Start a run{plan.data ? ` of ${plan.data.name}` : ""}</h1>
      <ErrorBox error={plan.error} title="Could not load the plan" />
      <ErrorBox error={agents.error} title="Could not load the agents" />
      {plan.data && (agents.data !== undefined || Boolean(agents.error)) && <LaunchForm plan={plan.data} agents={agents.data ?? []} concepts={concepts} />}
      {(plan.loading || agents.loading) && !(plan.data && agents.data) && <p className="muted">Loading…</p>}
    </div>
  );
}
