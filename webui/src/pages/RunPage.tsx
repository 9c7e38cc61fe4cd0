// A run, live: status and progress, the plan graph coloured by step state, the event log, open
// questions, then the result and artifacts. The SSE stream drives it; REST calls fill in the rest.

import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import {
  FINISHED_STATUSES,
  getPlanGraph,
  getRun,
  getRunResult,
  listArtifacts,
  listQuestions,
  resumeRun,
  stopRun,
  type Artifact,
  type Question,
  type Run,
  type RunResult,
} from "../api";
import { ErrorBox } from "../components/ErrorBox";
import { EventLog } from "../components/EventLog";
import { GraphView, preloadPlanGraph } from "../components/GraphView";
import { ProgressBar } from "../components/ProgressBar";
import { QuestionsPanel } from "../components/QuestionsPanel";
import { ArtifactsPanel, ResultPanel } from "../components/ResultPanel";
import { StatusBadge } from "../components/StatusBadge";
import { formatDuration, formatNumber, formatTime, runDuration, totalTokens } from "../format";
import { buildPlanTree, stateFromEvent, type StepState } from "../planTree";
import { href } from "../router";
import { flowIndexOfEvent, RunStream, TERMINAL_EVENTS, type RunEvent, type StreamState } from "../stream";
import { useAsync } from "../useAsync";

const REFRESH_DELAY_MS = 300;
const QUESTION_EVENTS = new Set(["question_asked", "question_answered", "run_waiting_input"]);
const STOPPABLE = new Set(["queued", "running", "waiting_input"]);
const RESUMABLE = new Set(["failed", "cancelled", "interrupted"]);

function useThrottled(fn: () => void, delay: number): () => void {
  const timer = useRef<number | null>(null);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => {
    if (timer.current !== null) window.clearTimeout(timer.current);
  }, []);
  return useCallback(() => {
    if (timer.current !== null) return;
    timer.current = window.setTimeout(() => {
      timer.current = null;
      latest.current();
    }, delay);
  }, [delay]);
}

export function RunPage({ runId }: { runId: string }) {
  const [run, setRun] = useState<Run | null>(null);
  const [runError, setRunError] = useState<unknown>(null);
  const [events, setEvents] = useState<RunEvent[]>([]);
  const [states, setStates] = useState<Record<string, StepState>>({});
  const [stepEvents, setStepEvents] = useState<Record<string, Record<string, unknown>>>({});
  const [stepCalls, setStepCalls] = useState<Record<string, Array<Record<string, unknown>>>>({});
  const [streamState, setStreamState] = useState<StreamState>("connecting");
  const [questions, setQuestions] = useState<Question[]>([]);
  const [result, setResult] = useState<RunResult | null>(null);
  const [artifacts, setArtifacts] = useState<Artifact[]>([]);
  const [actionError, setActionError] = useState<unknown>(null);
  const [streamGeneration, setStreamGeneration] = useState(0);
  const lastSeq = useRef<number | null>(null);

  useEffect(() => void preloadPlanGraph(), []);

  const refreshRun = useCallback(async () => {
    try {
      const fresh = await getRun(runId);
      setRun(fresh);
      setRunError(null);
      // A live run can ask while it is still "running"; a parked one is "waiting_input".
      if (FINISHED_STATUSES.has(fresh.status)) setQuestions([]);
      else setQuestions(await listQuestions(runId));
      if (fresh.status === "completed") setResult(await getRunResult(runId));
      if (FINISHED_STATUSES.has(fresh.status)) setArtifacts(await listArtifacts(runId));
    } catch (err) {
      setRunError(err);
    }
  }, [runId]);
  const refreshSoon = useThrottled(() => void refreshRun(), REFRESH_DELAY_MS);

  useEffect(() => {
    setRun(null);
    setEvents([]);
    setStates({});
    setStepEvents({});
    setStepCalls({});
    setQuestions([]);
    setResult(null);
    setArtifacts([]);
    lastSeq.current = null;
    void refreshRun();
  }, [runId, refreshRun]);

  useEffect(() => {
    const follower = new RunStream(runId, {
      onState: setStreamState,
      onEvent: (event) => {
        lastSeq.current = event.seq;
        setEvents((list) => [...list, event]);
        const flowIndex = flowIndexOfEvent(event);
        const state = stateFromEvent(event.type);
        if (flowIndex && state) {
          setStates((prev) => ({ ...prev, [flowIndex]: state }));
          setStepEvents((prev) => ({ ...prev, [flowIndex]: event.data }));
        }
        if (flowIndex && event.type === "llm_call") {
          setStepCalls((prev) => ({ ...prev, [flowIndex]: [...(prev[flowIndex] ?? []), event.data] }));
        }
        if (event.type === "llm_call" || event.type === "run_started" || state || QUESTION_EVENTS.has(event.type)) {
          refreshSoon();
        }
        if (TERMINAL_EVENTS.has(event.type)) void refreshRun();
      },
    }, lastSeq.current);
    return () => follower.close();
  }, [runId, refreshRun, refreshSoon, streamGeneration]);

  // Without a live stream (e.g. ended early), still keep the status fresh while the run is active.
  useEffect(() => {
    if (!run || FINISHED_STATUSES.has(run.status) || streamState === "live") return;
    const timer = window.setInterval(() => void refreshRun(), 2000);
    return () => window.clearInterval(timer);
  }, [run, streamState, refreshRun]);

  const planId = run?.plan_id;
  const planVersion = run?.plan_version;
  const graph = useAsync(
    () => (planId ? getPlanGraph(planId, planVersion ?? undefined) : Promise.resolve(null)),
    [planId, planVersion],
  );
  const tree = useMemo(() => (graph.data ? buildPlanTree(graph.data) : null), [graph.data]);

  async function act(action: (id: string) => Promise<unknown>, restartStream: boolean) {
    setActionError(null);
    try {
      await action(runId);
      await refreshRun();
      if (restartStream) setStreamGeneration((n) => n + 1);
    } catch (err) {
      setActionError(err);
    }
  }

  // A step with an open question is waiting for the user, whatever the stream said last.
  const shownStates = useMemo(() => {
    const waiting = questions.filter((q) => q.flow_index);
    if (waiting.length === 0) return states;
    const merged = { ...states };
    for (const q of waiting) merged[q.flow_index as string] = "waiting";
    return merged;
  }, [states, questions]);

  const tokens = totalTokens(run?.usage);
  const status = run?.status ?? "unknown";
  return (
    <div className="page wide">
      <nav className="crumbs" aria-label="Breadcrumb">
        <a href={href("/runs")}>Runs</a> / <span title={runId}>{runId}</span>
      </nav>
      <ErrorBox error={runError} title="Could not load the run" />
      <header className="page-head">
        <div>
          <h1>
            Run <span className="mono">{runId.length > 12 ? runId.slice(0, 8) : runId}</span>{" "}
            <span data-testid="run-status" data-status={status}>
              <StatusBadge status={status} />
            </span>
          </h1>
          {run && (
            <p className="muted">
              Plan <a href={href(`/plans/${encodeURIComponent(run.plan_id)}`)}>{run.plan_id}</a>
              {run.plan_version ? ` v${run.plan_version}` : ""} · agent {run.agent ?? "default"}
            </p>
          )}
        </div>
        <div className="actions">
          <span className={`stream stream-${streamState}`} data-testid="stream-state" role="status">
            <span className="dot" aria-hidden="true" /> {streamState}
          </span>
          {run && STOPPABLE.has(run.status) && (
            <button type="button" className="danger" onClick={() => void act(stopRun, false)}>
              Stop
            </button>
          )}
          {run && (
            <a className="button" href={href(`/plans/${encodeURIComponent(run.plan_id)}/run`)}>
              New run
            </a>
          )}
          {run && RESUMABLE.has(run.status) && (
            <button type="button" onClick={() => void act(resumeRun, true)}>
              Resume
            </button>
          )}
        </div>
      </header>
      <ErrorBox error={actionError} title="Action failed" />
      {run && (
        <>
          <ProgressBar progress={run.progress} status={status} />
          <dl className="run-facts">
            <dt>Created</dt>
            <dd>{formatTime(run.created_at)}</dd>
            <dt>Duration</dt>
            <dd>{formatDuration(runDuration(run))}</dd>
            <dt>Tokens</dt>
            <dd>{formatNumber(tokens)}</dd>
            {typeof run.usage?.llm_calls === "number" && (
              <>
                <dt>LLM calls</dt>
                <dd>{run.usage.llm_calls}</dd>
              </>
            )}
          </dl>
          {run.error && (
            <p className="error-box" role="alert">
              {run.error}
            </p>
          )}
        </>
      )}
      <QuestionsPanel runId={runId} questions={questions} onAnswered={() => void refreshRun()} />
      {result && <ResultPanel result={result} />}
      <ArtifactsPanel runId={runId} artifacts={artifacts} />
      <section className="panel" aria-labelledby="graph-title">
        <h2 id="graph-title">Plan graph</h2>
        <ErrorBox error={graph.error} title="Could not load the graph" />
        {tree ? <GraphView tree={tree} states={shownStates} stepEvents={stepEvents} stepCalls={stepCalls} /> : <p className="muted">Loading graph…</p>}
      </section>
      <EventLog events={events} />
    </div>
  );
}
