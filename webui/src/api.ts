// Typed access to the NormCode Server HTTP API. Every call goes through `request`, which adds the
// bearer token, asks for one on 401 and turns `{error, detail}` bodies into ApiError.

import { askForToken, currentToken } from "./auth";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly detail: unknown,
  ) {
    super(error);
  }
}

const MAX_TOKEN_ATTEMPTS = 5;

async function send(path: string, init: RequestInit = {}): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    const token = currentToken();
    const headers = new Headers(init.headers);
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const response = await fetch(path, { ...init, headers });
    if (response.status !== 401 || attempt >= MAX_TOKEN_ATTEMPTS) return response;
    await askForToken(token !== null);
  }
}

async function fail(response: Response): Promise<never> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy error page, say): fall back to the status line.
  }
  const fields = (body ?? {}) as { error?: unknown; detail?: unknown };
  const error = typeof fields.error === "string" ? fields.error : `HTTP ${response.status} ${response.statusText}`;
  throw new ApiError(response.status, error, fields.detail ?? null);
}

export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  return (await requestWithHeaders<T>(path, init)).body;
}

export async function requestWithHeaders<T>(path: string, init: RequestInit = {}): Promise<{ body: T; headers: Headers }> {
  const response = await send(path, init);
  if (!response.ok) await fail(response);
  const body = response.status === 204 ? (undefined as T) : ((await response.json()) as T);
  return { body, headers: response.headers };
}

export async function requestBlob(path: string): Promise<Blob> {
  const response = await send(path);
  if (!response.ok) await fail(response);
  return response.blob();
}

function postJson<T>(path: string, body: unknown): Promise<T> {
  return request<T>(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

const enc = encodeURIComponent;

// ---- health -------------------------------------------------------------------------------------

export interface Health {
  status: string;
  version?: string;
  data_dir?: string;
  plans_count?: number;
  active_runs?: number;
}

export interface Readiness {
  ready: boolean;
  checks: Record<string, unknown> | Array<Record<string, unknown>>;
}

/** /health and /ready answer 503 with a JSON body when unwell; that body is what we want to show. */
async function probe<T>(path: string): Promise<T> {
  const response = await send(path);
  try {
    return (await response.json()) as T;
  } catch {
    throw new ApiError(response.status, `HTTP ${response.status}`, null);
  }
}

export const getHealth = () => probe<Health>("/health");
export const getReady = () => probe<Readiness>("/ready");

// ---- agents -------------------------------------------------------------------------------------

export interface Agent {
  name: string;
  provider?: string;
  model?: string;
  available: boolean;
  reason?: string | null;
  default?: boolean;
}

export async function listAgents(): Promise<Agent[]> {
  const body = await request<Agent[] | { agents: Agent[]; default_agent?: string }>("/api/agents");
  if (Array.isArray(body)) return body;
  const fallback = body.default_agent;
  return body.agents.map((a) => ({ ...a, default: a.default ?? a.name === fallback }));
}

// ---- plans --------------------------------------------------------------------------------------

export interface IoSpec {
  type?: string;
  source?: string;
  description?: string | null;
  [key: string]: unknown;
}

export interface Plan {
  id: string;
  name: string;
  /** The server's version of the deployment ("1", "2", ...): what runs and graphs refer to. */
  version: string;
  /** The version the package's manifest declares ("1.0.0"), when it declares one. */
  packageVersion: string;
  versions: string[];
  description: string;
  inputs: Record<string, IoSpec>;
  outputs: Record<string, IoSpec>;
  defaultAgent?: string;
  raw: Record<string, unknown>;
}

type Raw = Record<string, unknown>;

function asRecord(value: unknown): Record<string, IoSpec> {
  if (Array.isArray(value)) {
    // A list of names or of {name, ...} objects: key it by name.
    const out: Record<string, IoSpec> = {};
    for (const item of value) {
      if (typeof item === "string") out[item] = {};
      else if (item && typeof item === "object" && "name" in item) out[String((item as Raw).name)] = item as IoSpec;
    }
    return out;
  }
  return value && typeof value === "object" ? (value as Record<string, IoSpec>) : {};
}

const text = (value: unknown): string => (value === undefined || value === null ? "" : String(value));

export function toPlan(raw: Raw): Plan {
  const manifest = (raw.manifest && typeof raw.manifest === "object" ? raw.manifest : {}) as Raw;
  const id = text(raw.plan_id ?? raw.id ?? manifest.name);
  const version = text(raw.version ?? raw.latest_version);
  const versions = Array.isArray(raw.versions)
    ? raw.versions.map((v) => text(typeof v === "object" && v ? (v as Raw).version : v))
    : version
      ? [version]
      : [];
  return {
    id,
    name: text(raw.name ?? raw.plan_name ?? manifest.name) || id,
    version,
    packageVersion: text(raw.package_version ?? manifest.version),
    versions,
    description: text(raw.description ?? manifest.description),
    inputs: asRecord(raw.inputs ?? manifest.inputs),
    outputs: asRecord(raw.outputs ?? manifest.outputs),
    defaultAgent: text(raw.llm_model ?? manifest.default_agent) || undefined,
    raw,
  };
}

export async function listPlans(): Promise<Plan[]> {
  const body = await request<Raw[] | { plans: Raw[] }>("/api/plans");
  return (Array.isArray(body) ? body : body.plans).map(toPlan);
}

export async function getPlan(planId: string): Promise<Plan> {
  return toPlan(await request<Raw>(`/api/plans/${enc(planId)}`));
}

export function deletePlan(planId: string): Promise<unknown> {
  return request(`/api/plans/${enc(planId)}`, { method: "DELETE" });
}

export async function deployPlanFile(file: File): Promise<Raw> {
  const form = new FormData();
  form.append("plan", file, file.name);
  return request<Raw>("/api/plans/deploy-file", { method: "POST", body: form });
}

export interface Concept {
  concept_name: string;
  type?: string;
  description?: string;
  natural_name?: string;
  is_ground_concept?: boolean;
  is_final_concept?: boolean;
  reference_data?: unknown;
  reference_axis_names?: string[];
  flow_indices?: string[];
  [key: string]: unknown;
}

export interface Inference {
  flow_info?: { flow_index?: string };
  flow_index?: string;
  inference_sequence?: string;
  concept_to_infer?: string;
  function_concept?: string;
  value_concepts?: string[];
  context_concepts?: string[];
  working_interpretation?: unknown;
  [key: string]: unknown;
}

export interface PlanGraph {
  concepts: Concept[];
  inferences: Inference[];
}

export async function getPlanGraph(planId: string, version?: string): Promise<PlanGraph> {
  const body = await request<Raw>(`/api/plans/${enc(planId)}/graph${query({ version })}`);
  return {
    concepts: (body.concepts as Concept[] | undefined) ?? [],
    inferences: (body.inferences as Inference[] | undefined) ?? [],
  };
}

// ---- runs ---------------------------------------------------------------------------------------

export type RunStatus =
  | "queued"
  | "running"
  | "waiting_input"
  | "completed"
  | "failed"
  | "cancelled"
  | "interrupted";

export const RUN_STATUSES: RunStatus[] = [
  "queued",
  "running",
  "waiting_input",
  "completed",
  "failed",
  "cancelled",
  "interrupted",
];

/** States a run stays in unless someone resumes it ("interrupted" runs resume on their own). */
export const FINISHED_STATUSES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

export interface Progress {
  completed_count?: number;
  total_count?: number;
  cycle_count?: number;
  current_inference?: string | null;
}

export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  input_tokens?: number;
  output_tokens?: number;
  llm_calls?: number;
  [key: string]: unknown;
}

export interface Run {
  run_id: string;
  plan_id: string;
  plan_version?: string;
  status: RunStatus;
  agent?: string | null;
  inputs?: unknown;
  error?: string | null;
  progress?: Progress;
  usage?: Usage;
  created_at?: string | null;
  started_at?: string | null;
  finished_at?: string | null;
  [key: string]: unknown;
}

export interface StartRun {
  plan_id: string;
  version?: string;
  inputs?: Record<string, unknown>;
  agent?: string;
  max_cycles?: number;
}

export function startRun(body: StartRun): Promise<Run> {
  return postJson<Run>("/api/runs", body);
}

export interface RunPage {
  runs: Run[];
  total: number | null;
}

export async function listRuns(filter: {
  plan_id?: string;
  status?: string;
  limit?: number;
  offset?: number;
}): Promise<RunPage> {
  const { body, headers } = await requestWithHeaders<Run[] | { runs: Run[]; total?: number }>(
    `/api/runs${query(filter)}`,
  );
  const header = headers.get("X-Total-Count");
  const total = header !== null && header !== "" && Number.isFinite(Number(header)) ? Number(header) : null;
  if (Array.isArray(body)) return { runs: body, total };
  return { runs: body.runs, total: body.total ?? total };
}

export const getRun = (runId: string) => request<Run>(`/api/runs/${enc(runId)}`);
export const stopRun = (runId: string) => request<Run>(`/api/runs/${enc(runId)}/stop`, { method: "POST" });
export const resumeRun = (runId: string) => request<Run>(`/api/runs/${enc(runId)}/resume`, { method: "POST" });

export interface FinalConcept {
  name: string;
  tensor: unknown;
  axes?: string[];
  shape?: number[];
}

export interface RunResult {
  status?: string;
  final_concepts: FinalConcept[];
  error?: string | null;
  [key: string]: unknown;
}

export async function getRunResult(runId: string): Promise<RunResult> {
  const body = await request<Raw>(`/api/runs/${enc(runId)}/result`);
  const concepts = (body.final_concepts ?? body.concepts ?? []) as FinalConcept[];
  return { ...body, final_concepts: concepts } as RunResult;
}

export interface Question {
  question_id: string;
  prompt: string;
  kind?: string;
  flow_index?: string | null;
  options?: string[] | null;
  default?: string | null;
  asked_at?: string | null;
  [key: string]: unknown;
}

function toQuestion(raw: Raw): Question {
  // The question itself may be a string or {prompt, kind, options, default}.
  const inner = (raw.question && typeof raw.question === "object" ? raw.question : {}) as Raw;
  const prompt = raw.prompt ?? inner.prompt ?? (typeof raw.question === "string" ? raw.question : raw.text);
  const options = raw.options ?? inner.options ?? inner.choices;
  return {
    ...raw,
    question_id: text(raw.question_id ?? raw.id ?? raw.qid),
    prompt: text(prompt),
    kind: text(raw.kind ?? inner.kind) || undefined,
    options: Array.isArray(options) ? options.map(text) : null,
    default: (raw.default ?? inner.default ?? null) as string | null,
    flow_index: (raw.flow_index ?? null) as string | null,
  };
}

export async function listQuestions(runId: string): Promise<Question[]> {
  const body = await request<Raw[] | { questions?: Raw[]; inputs?: Raw[] }>(`/api/runs/${enc(runId)}/inputs`);
  const rows = Array.isArray(body) ? body : (body.questions ?? body.inputs ?? []);
  return rows.map(toQuestion);
}

export function answerQuestion(runId: string, questionId: string, answer: string): Promise<unknown> {
  return postJson(`/api/runs/${enc(runId)}/inputs/${enc(questionId)}`, { answer });
}

export interface Artifact {
  path: string;
  size?: number;
  [key: string]: unknown;
}

export async function listArtifacts(runId: string): Promise<Artifact[]> {
  const body = await request<Array<Raw | string> | { artifacts: Array<Raw | string> }>(
    `/api/runs/${enc(runId)}/artifacts`,
  );
  const rows = Array.isArray(body) ? body : body.artifacts;
  return rows.map((row) => (typeof row === "string" ? { path: row } : ({ ...row, path: String(row.path) } as Artifact)));
}

export function artifactUrl(runId: string, path: string): string {
  return `/api/runs/${enc(runId)}/artifacts/${path.split("/").map(enc).join("/")}`;
}
