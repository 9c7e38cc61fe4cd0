import type { Progress } from "../api";

export function ProgressBar({ progress, status }: { progress: Progress | undefined; status: string }) {
  const done = progress?.completed_count ?? 0;
  const total = progress?.total_count ?? 0;
  const percent = total > 0 ? Math.min(100, Math.round((done / total) * 100)) : status === "completed" ? 100 : 0;
  return (
    <div className="progress">
      <div
        className={`progress-track status-${status}`}
        role="progressbar"
        aria-label="Run progress"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
      >
        <div className="progress-fill" style={{ width: `${percent}%` }} />
      </div>
      <span className="progress-text">
        {total > 0 ? `${done} / ${total} steps` : "—"}
        {progress?.cycle_count ? ` · cycle ${progress.cycle_count}` : ""}
        {progress?.current_inference ? ` · at ${progress.current_inference}` : ""}
      </span>
    </div>
  );
}
