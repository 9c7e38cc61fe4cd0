import { useState } from "react";
import { deletePlan, listPlans, type Plan } from "../api";
import { DeployDropZone } from "../components/DeployDropZone";
import { ErrorBox } from "../components/ErrorBox";
import { IoList } from "../components/IoList";
import { VersionBadge } from "../components/VersionBadge";
import { href } from "../router";
import { useAsync } from "../useAsync";

function PlanCard({ plan, onDeleted }: { plan: Plan; onDeleted: () => void }) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function remove() {
    if (!window.confirm(`Delete plan ${plan.name} and all its versions?`)) return;
    setBusy(true);
    try {
      await deletePlan(plan.id);
      onDeleted();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <li className="card plan-card" data-testid="plan-card" data-plan-id={plan.id}>
      <header>
        <h3>
          <a href={href(`/plans/${encodeURIComponent(plan.id)}`)}>{plan.name}</a>
        </h3>
        <VersionBadge plan={plan} />
      </header>
      {plan.description && <p className="description">{plan.description}</p>}
      <div className="io-grid">
        <IoList title="Inputs" items={plan.inputs} />
        <IoList title="Outputs" items={plan.outputs} />
      </div>
      <div className="actions">
        <a className="button primary" href={href(`/plans/${encodeURIComponent(plan.id)}/run`)}>
          Run
        </a>
        <a className="button" href={href(`/plans/${encodeURIComponent(plan.id)}`)}>
          Graph
        </a>
        <a className="button" href={href("/runs", { plan_id: plan.id })}>
          Runs
        </a>
        <button type="button" className="danger" disabled={busy} onClick={() => void remove()}>
          Delete
        </button>
      </div>
      <ErrorBox error={error} title="Delete failed" />
    </li>
  );
}

export function PlansPage() {
  const plans = useAsync(listPlans, []);
  return (
    <div className="page">
      <h1>Plans</h1>
      <DeployDropZone onDeployed={plans.reload} />
      <ErrorBox error={plans.error} title="Could not load plans" />
      {plans.loading && !plans.data && <p className="muted">Loading…</p>}
      {plans.data && plans.data.length === 0 && <p className="muted">No plans deployed yet.</p>}
      {plans.data && plans.data.length > 0 && (
        <ul className="card-list" aria-label="Deployed plans">
          {plans.data.map((plan) => (
            <PlanCard key={plan.id} plan={plan} onDeleted={plans.reload} />
          ))}
        </ul>
      )}
    </div>
  );
}
