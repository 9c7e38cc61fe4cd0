// A finished run's final concepts and its artifacts (downloaded with the token, then saved).

import { useState } from "react";
import { artifactUrl, requestBlob, type Artifact, type FinalConcept, type RunResult } from "../api";
import { formatBytes } from "../format";
import { ErrorBox } from "./ErrorBox";

function Tensor({ concept }: { concept: FinalConcept }) {
  const rows = concept.tensor;
  // A one- or two-axis tensor of scalars reads best as a table.
  if (Array.isArray(rows) && rows.length > 0 && rows.length <= 200) {
    const matrix = rows.map((row) => (Array.isArray(row) ? row : [row]));
    if (matrix.every((row) => row.every((cell) => typeof cell !== "object" || cell === null))) {
      return (
        <table className="tensor">
          <tbody>
            {matrix.map((row, i) => (
              <tr key={i}>
                {row.map((cell, j) => (
                  <td key={j}>{String(cell)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      );
    }
  }
  return <pre className="value">{JSON.stringify(rows, null, 2)}</pre>;
}

export function ResultPanel({ result }: { result: RunResult }) {
  return (
    <section className="panel" aria-labelledby="result-title" data-testid="result">
      <h2 id="result-title">Result</h2>
      {result.final_concepts.length === 0 && <p className="muted">The run produced no final concepts.</p>}
      {result.final_concepts.map((concept) => (
        <div className="final-concept" key={concept.name} data-concept={concept.name}>
          <h3>
            <code>{concept.name}</code>
          </h3>
          {(concept.axes?.length || concept.shape?.length) && (
            <p className="muted small">
              {concept.axes?.length ? `axes: ${concept.axes.join(", ")}` : ""}
              {concept.shape?.length ? ` · shape: ${concept.shape.join(" × ")}` : ""}
            </p>
          )}
          <Tensor concept={concept} />
        </div>
      ))}
    </section>
  );
}

export function ArtifactsPanel({ runId, artifacts }: { runId: string; artifacts: Artifact[] }) {
  const [error, setError] = useState<unknown>(null);
  if (artifacts.length === 0) return null;

  async function download(path: string) {
    setError(null);
    try {
      const blob = await requestBlob(artifactUrl(runId, path));
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = path.split("/").pop() ?? "artifact";
      document.body.appendChild(a);
      a.click();
      a.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      setError(err);
    }
  }

  return (
    <section className="panel" aria-labelledby="artifacts-title" data-testid="artifacts">
      <h2 id="artifacts-title">Artifacts</h2>
      <ul className="artifacts">
        {artifacts.map((artifact) => (
          <li key={artifact.path}>
            <button type="button" className="link" onClick={() => void download(artifact.path)}>
              {artifact.path}
            </button>{" "}
            <span className="muted small">{formatBytes(artifact.size)}</span>
          </li>
        ))}
      </ul>
      <ErrorBox error={error} title="Download failed" />
    </section>
  );
}
