// Shows an error with every problem the server listed in `detail`.

import { ApiError } from "../api";
import { errorText } from "../format";

function describe(item: unknown): string {
  if (typeof item === "string") return item;
  if (item && typeof item === "object") {
    const fields = item as Record<string, unknown>;
    const message = fields.message ?? fields.msg ?? fields.problem ?? fields.detail;
    const where = fields.path ?? fields.location ?? fields.where ?? fields.file ?? fields.field ?? fields.concept;
    if (message !== undefined) return where !== undefined ? `${String(where)}: ${String(message)}` : String(message);
  }
  return JSON.stringify(item);
}

export function problemsOf(err: unknown): string[] {
  if (!(err instanceof ApiError) || err.detail === null || err.detail === undefined) return [];
  const detail = err.detail;
  if (Array.isArray(detail)) return detail.map(describe);
  if (typeof detail === "object") {
    const fields = detail as Record<string, unknown>;
    const list = fields.problems ?? fields.errors;
    if (Array.isArray(list)) return list.map(describe);
  }
  return [describe(detail)];
}

export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const problems = problemsOf(error);
  const status = error instanceof ApiError ? ` (${error.status})` : "";
  return (
    <div className="error-box" role="alert">
      <strong>
        {title ?? "Error"}
        {status}: {errorText(error)}
      </strong>
      {problems.length > 0 && (
        <ul className="problems">
          {problems.map((problem, i) => (
            <li key={i}>{problem}</li>
          ))}
        </ul>
      )}
    </div>
  );
}
