import type { Plan } from "../api";

/** The package's own version, with the server's deployment number beside it. */
export function VersionBadge({ plan }: { plan: Plan }) {
  if (!plan.version && !plan.packageVersion) return null;
  return (
    <>
      {plan.packageVersion && <span className="badge version">v{plan.packageVersion}</span>}
      {plan.version && <span className="muted small"> deployment {plan.version}</span>}
    </>
  );
}
