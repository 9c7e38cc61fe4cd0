// Turns a plan's inference repo into a tree of steps keyed by flow index ("1", "1.2", "1.2.3"):
// a step's parent is the nearest existing ancestor index, whose inference consumes its result.

import type { Concept, Inference, PlanGraph } from "./api";

export type StepState = "pending" | "running" | "completed" | "failed" | "skipped" | "waiting";

export interface Step {
  flowIndex: string;
  parent: string | null;
  depth: number;
  sequence: string;
  concept: string;
  inference: Inference;
}

export interface PlanTree {
  steps: Step[];
  byIndex: Map<string, Step>;
  concepts: Map<string, Concept>;
}

export function flowIndexOf(inference: Inference, position: number): string {
  return String(inference.flow_info?.flow_index ?? inference.flow_index ?? `#${position + 1}`);
}

function compareIndex(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? -1;
    const y = pb[i] ?? -1;
    if (Number.isNaN(x) || Number.isNaN(y)) return a.localeCompare(b);
    if (x !== y) return x - y;
  }
  return 0;
}

export function buildPlanTree(graph: PlanGraph): PlanTree {
  const raw = graph.inferences.map((inference, i) => ({ inference, flowIndex: flowIndexOf(inference, i) }));
  const known = new Set(raw.map((r) => r.flowIndex));
  const steps: Step[] = raw.map(({ inference, flowIndex }) => {
    let parent: string | null = null;
    const parts = flowIndex.split(".");
    for (let n = parts.length - 1; n > 0 && parent === null; n--) {
      const candidate = parts.slice(0, n).join(".");
      if (known.has(candidate)) parent = candidate;
    }
    return {
      flowIndex,
      parent,
      depth: parts.length - 1,
      sequence: String(inference.inference_sequence ?? "step"),
      concept: String(inference.concept_to_infer ?? flowIndex),
      inference,
    };
  });
  steps.sort((a, b) => compareIndex(a.flowIndex, b.flowIndex));
  const concepts = new Map<string, Concept>();
  for (const concept of graph.concepts) concepts.set(concept.concept_name, concept);
  return { steps, byIndex: new Map(steps.map((s) => [s.flowIndex, s])), concepts };
}

/** The step state an event implies, or null when the event says nothing about a step. */
export function stateFromEvent(type: string): StepState | null {
  switch (type) {
    case "step_started":
      return "running";
    case "step_completed":
      return "completed";
    case "step_failed":
      return "failed";
    case "step_skipped":
      return "skipped";
    case "question_asked":
      return "waiting";
    case "question_answered":
      return "running";
    default:
      return null;
  }
}
