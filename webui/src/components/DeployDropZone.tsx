// Deploys a plan package: drop a .zip here or pick one; every validation problem is listed.

import { useRef, useState, type DragEvent } from "react";
import { deployPlanFile, toPlan } from "../api";
import { ErrorBox } from "./ErrorBox";

export function DeployDropZone({ onDeployed }: { onDeployed: () => void }) {
  const input = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);

  async function deploy(file: File) {
    setError(null);
    setDone(null);
    if (!file.name.toLowerCase().endsWith(".zip")) {
      setError(new Error(`${file.name} is not a .zip plan package`));
      return;
    }
    setBusy(true);
    try {
      const raw = await deployPlanFile(file);
      const plan = toPlan(raw);
      const where = plan.version ? ` as deployment ${plan.version}` : "";
      setDone(raw.already_deployed ? `${plan.name} is already deployed${where}` : `Deployed ${plan.name}${where}`);
      onDeployed();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      if (input.current) input.current.value = "";
    }
  }

  function onDrop(event: DragEvent) {
    event.preventDefault();
    setDragging(false);
    const file = event.dataTransfer.files[0];
    if (file) void deploy(file);
  }

  return (
    <section className="deploy" aria-labelledby="deploy-title">
      <div
        className={`dropzone${dragging ? " dragging" : ""}`}
        data-testid="dropzone"
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <h2 id="deploy-title">Deploy a plan</h2>
        <p>Drop a plan package (.zip) here, or</p>
        <button type="button" className="primary" disabled={busy} onClick={() => input.current?.click()}>
          {busy ? "Deploying…" : "Choose a .zip file"}
        </button>
        <input
          ref={input}
          type="file"
          accept=".zip,application/zip"
          hidden
          aria-label="Plan package"
          data-testid="deploy-input"
          onChange={(e) => {
            const file = e.target.files?.[0];
            if (file) void deploy(file);
          }}
        />
      </div>
      {done && (
        <p className="success" role="status">
          {done}
        </p>
      )}
      <ErrorBox error={error} title="Deploy failed" />
    </section>
  );
}
