// What the user sees after picking a step: the inference and the concepts it touches.

import type { Concept } from "../api";
import type { PlanTree, StepState } from "../planTree";

function ConceptInfo({ name, concept }: { name: string; concept: Concept | undefined }) {
  return (
    <div className="concept">
      <code className="concept-name">{name}</code>
      {concept && (
        <dl className="concept-fields">
          {concept.natural_name && (
            <>
              <dt>Name</dt>
              <dd>{concept.natural_name}</dd>
            </>
          )}
          {concept.type && (
            <>
              <dt>Type</dt>
              <dd>
                <code>{concept.type}</code>
                {concept.is_ground_concept ? " · ground" : ""}
                {concept.is_final_concept ? " · final" : ""}
              </dd>
            </>
          )}
          {concept.description && (
            <>
              <dt>About</dt>
              <dd>{concept.description}</dd>
            </>
          )}
          {concept.reference_axis_names && concept.reference_axis_names.length > 0 && (
            <>
              <dt>Axes</dt>
              <dd>{concept.reference_axis_names.join(", ")}</dd>
            </>
          )}
          {concept.reference_data !== undefined && concept.reference_data !== null && (
            <>
              <dt>Value</dt>
              <dd>
                <pre className="value">{JSON.stringify(concept.reference_data, null, 1)}</pre>
              </dd>
            </>
          )}
        </dl>
      )}
    </div>
  );
}

const MAX_SHOWN_CHARS = 20_000;

function clip(text: string): string {
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}\n… (${text.length - MAX_SHOWN_CHARS} more characters)` : text;
}

export interface StepDetailsProps {
  tree: PlanTree;
  flowIndex: string;
  state?: StepState;
  lastEvent?: Record<string, unknown>;
  llmCalls?: Array<Record<string, unknown>>;
  onClose: () => void;
}

function LlmCall({ call, n }: { call: Record<string, unknown>; n: number }) {
  const request = (call.request ?? {}) as { messages?: Array<{ role?: string; content?: unknown }> };
  const response = (call.response ?? {}) as Record<string, unknown>;
  const prompt = (request.messages ?? [])
    .filter((m) => m.role === "user")
    .map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content)))
    .join("\n");
  return (
    <details className="llm-call">
      <summary>
        Call {n}
        {typeof response.model === "string" ? ` · ${response.model}` : ""}
        {typeof response.input_tokens === "number" ? ` · ${response.input_tokens} in / ${String(response.output_tokens ?? 0)} out` : ""}
      </summary>
      <h4>Prompt</h4>
      <pre className="value">{clip(prompt)}</pre>
      <h4>Reply</h4>
      <pre className="value">{clip(typeof response.text === "string" ? response.text : JSON.stringify(response, null, 1))}</pre>
    </details>
  );
}

export function StepDetails({ tree, flowIndex, state, lastEvent, llmCalls, onClose }: StepDetailsProps) {
  const step = tree.byIndex.get(flowIndex);
  if (!step) return null;
  const inference = step.inference;
  const values = inference.value_concepts ?? [];
  const contexts = inference.context_concepts ?? [];
  return (
    <section className="step-details" aria-label={`Step ${flowIndex} details`} data-testid="step-details">
      <header>
        <h3>
          Step <span className="flow-index">{flowIndex}</span> · {step.sequence}
        </h3>
        <button type="button" className="link" onClick={onClose} aria-label="Close step details">
          ✕
        </button>
      </header>
      {state && (
        <p>
          State: <span className={`badge state-${state}`}>{state}</span>
        </p>
      )}
      {lastEvent && (lastEvent.error || lastEvent.reason || lastEvent.message) ? (
        <p className="error-text">{String(lastEvent.error ?? lastEvent.reason ?? lastEvent.message)}</p>
      ) : null}
      {lastEvent && lastEvent.result !== undefined && lastEvent.result !== null && (
        <>
          <h4>Result</h4>
          <pre className="value" data-testid="step-result">
            {clip(JSON.stringify(lastEvent.result, null, 1))}
          </pre>
        </>
      )}
      {llmCalls && llmCalls.length > 0 && (
        <>
          <h4>LLM calls ({llmCalls.length})</h4>
          {llmCalls.map((call, i) => (
            <LlmCall key={i} call={call} n={i + 1} />
          ))}
        </>
      )}
      <h4>Infers</h4>
      <ConceptInfo name={step.concept} concept={tree.concepts.get(step.concept)} />
      {inference.function_concept && (
        <>
          <h4>Function</h4>
          <ConceptInfo name={inference.function_concept} concept={tree.concepts.get(inference.function_concept)} />
        </>
      )}
      {values.length > 0 && (
        <>
          <h4>Values</h4>
          {values.map((name) => (
            <ConceptInfo key={name} name={name} concept={tree.concepts.get(name)} />
          ))}
        </>
      )}
      {contexts.length > 0 && (
        <>
          <h4>Context</h4>
          {contexts.map((name) => (
            <ConceptInfo key={name} name={name} concept={tree.concepts.get(name)} />
          ))}
        </>
      )}
      {inference.working_interpretation !== undefined && (
        <details>
          <summary>Working interpretation</summary>
          <pre className="value">{JSON.stringify(inference.working_interpretation, null, 2)}</pre>
        </details>
      )}
    </section>
  );
}
