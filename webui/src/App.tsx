import { useEffect, useRef } from "react";
import { HealthIndicator } from "./components/HealthIndicator";
import { TokenDialog } from "./components/TokenDialog";
import { PlanPage } from "./pages/PlanPage";
import { PlansPage } from "./pages/PlansPage";
import { RunLaunchPage } from "./pages/RunLaunchPage";
import { RunPage } from "./pages/RunPage";
import { RunsPage } from "./pages/RunsPage";
import { href, match, useLocation, type Location } from "./router";

function Page({ location }: { location: Location }) {
  const { path, params } = location;
  let m: Record<string, string> | null;
  if (path === "/" || path === "/plans") return <PlansPage />;
  if ((m = match("/plans/:id", path))) return <PlanPage planId={m.id} />;
  if ((m = match("/plans/:id/run", path))) return <RunLaunchPage planId={m.id} />;
  if (path === "/runs") return <RunsPage params={params} />;
  if ((m = match("/runs/:id", path))) return <RunPage key={m.id} runId={m.id} />;
  return (
    <div className="page">
      <h1>Not found</h1>
      <p>
        Nothing lives at <code>{path}</code>. <a href={href("/plans")}>Go to the plans</a>.
      </p>
    </div>
  );
}

export function App() {
  const location = useLocation();
  const main = useRef<HTMLElement>(null);
  const section = location.path.startsWith("/runs") ? "runs" : "plans";

  // Move focus to the new page so keyboard and screen-reader users start at its top.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    window.scrollTo(0, 0);
    main.current?.focus({ preventScroll: true });
  }, [location.path]);

  return (
    <>
      <a className="skip-link" href="#main" onClick={(e) => {
          e.preventDefault();
          main.current?.focus();
        }}>
        Skip to content
      </a>
      <header className="topbar">
        <a className="brand" href={href("/plans")}>
          NormCode
        </a>
        <nav aria-label="Main">
          <a href={href("/plans")} aria-current={section === "plans" ? "page" : undefined}>
            Plans
          </a>
          <a href={href("/runs")} aria-current={section === "runs" ? "page" : undefined}>
            Runs
          </a>
        </nav>
        <HealthIndicator />
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        <Page location={location} />
      </main>
      <TokenDialog />
    </>
  );
}
