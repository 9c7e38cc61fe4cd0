// A plan's graph with its step details and, for keyboard and small screens, a plain step list.

import { lazy, Suspense, useState } from "react";
import type { PlanTree, StepState } from "../planTree";
import { StepDetails } from "./StepDetails";

/** Starts loading the graph code; pages call it on mount so it arrives alongside their data. */
export const preloadPlanGraph = () => import("./PlanGraph");
const PlanGraph = lazy(preloadPlanGraph);

export interface GraphViewProps {
  tree: PlanTree;
  states?: Record<string, StepState>;
  stepEvents?: Record<string, Record<string, unknown>>;
  stepCalls?: Record<string, Array<Record<string, unknown>>>;
}

export function GraphView({ tree, states, stepEvents, stepCalls }: GraphViewProps) {
  const [selected, setSelected] = useState<string | null>(null);
  return (
    <div className="graph-view">
      <div className="graph-pane">
        <Suspense fallback={<div className="graph-canvas loading">Loading graph…</div>}>
          <PlanGraph tree={tree} states={states} selected={selected} onSelect={setSelected} />
        </Suspense>
        <details className="step-list">
          <summary>Steps ({tree.steps.length})</summary>
          <ul>
            {tree.steps.map((step) => (
              <li key={step.flowIndex} style={{ paddingLeft: `${step.depth * 0.75}rem` }}>
                <button
                  type="button"
                  className={`link step-link${selected === step.flowIndex ? " current" : ""}`}
                  onClick={() => setSelected(step.flowIndex)}
                >
                  <span className="flow-index">{step.flowIndex}</span> {step.concept}
                </button>
                {states?.[step.flowIndex] && (
                  <span className={`badge state-${states[step.flowIndex]}`}>{states[step.flowIndex]}</span>
                )}
              </li>
            ))}
          </ul>
        </details>
      </div>
      {selected ? (
        <StepDetails
          tree={tree}
          flowIndex={selected}
          state={states?.[selected]}
          lastEvent={stepEvents?.[selected]}
          llmCalls={stepCalls?.[selected]}
          onClose={() => setSelected(null)}
        />
      ) : (
        <p className="step-details placeholder muted">Select a step to see its inference and concepts.</p>
      )}
    </div>
  );
}
