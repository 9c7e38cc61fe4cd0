import { useEffect, useMemo } from "react";
import { getPlan, getPlanGraph } from "../api";
import { ErrorBox } from "../components/ErrorBox";
import { GraphView, preloadPlanGraph } from "../components/GraphView";
import { IoList } from "../components/IoList";
import { VersionBadge } from "../components/VersionBadge";
import { buildPlanTree } from "../planTree";
import { href } from "../router";
import { useAsync } from "../useAsync";

export function PlanPage({ planId }: { planId: string }) {
  useEffect(() => void preloadPlanGraph(), []);
  const plan = useAsync(() => getPlan(planId), [planId]);
  const graph = useAsync(() => getPlanGraph(planId), [planId]);
  const tree = useMemo(() => (graph.data ? buildPlanTree(graph.data) : null), [graph.data]);

  return (
    <div className="page wide">
      <nav className="crumbs" aria-label="Breadcrumb">
        <a href={href("/plans")}>Plans</a> / <span>{plan.data?.name ?? planId}</span>
      </nav>
      <ErrorBox error={plan.error} title="Could not load the plan" />
      {plan.data && (
        <header className="page-head">
          <div>
            <h1>
              {plan.data.name} <VersionBadge plan={plan.data} />
            </h1>
            {plan.data.description && <p className="description">{plan.data.description}</p>}
          </div>
          <div className="actions">
            <a className="button primary" href={href(`/plans/${encodeURIComponent(planId)}/run`)}>
              Start a run
            </a>
            <a className="button" href={href("/runs", { plan_id: planId })}>
              Runs
            </a>
          </div>
        </header>
      )}
      {plan.data && (
        <details className="io-details">
          <summary>Inputs and outputs</summary>
          <div className="io-grid">
            <IoList title="Inputs" items={plan.data.inputs} />
            <IoList title="Outputs" items={plan.data.outputs} />
          </div>
        </details>
      )}
      <ErrorBox error={graph.error} title="Could not load the graph" />
      {graph.loading && !graph.data && <p className="muted">Loading graph…</p>}
      {tree && (
        <>
          <p className="muted small">
            {tree.steps.length} steps, {tree.concepts.size} concepts. Click a step (or pick it in the list) for
            details.
          </p>
          <GraphView tree={tree} />
        </>
      )}
    </div>
  );
}
