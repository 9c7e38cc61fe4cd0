// Display helpers shared by the pages.

import type { Run, Usage } from "./api";

export function parseTime(value: string | number | null | undefined): number | null {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value < 1e12 ? value * 1000 : value;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

export function formatTime(value: string | number | null | undefined): string {
  const ms = parseTime(value);
  return ms === null ? "—" : new Date(ms).toLocaleString();
}

export function formatClock(value: string | number | null | undefined): string {
  const ms = parseTime(value);
  return ms === null ? "" : new Date(ms).toLocaleTimeString();
}

export function formatDuration(ms: number | null): string {
  if (ms === null || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function runDuration(run: Run, now: number = Date.now()): number | null {
  const start = parseTime(run.started_at ?? run.created_at);
  if (start === null) return null;
  const end = parseTime(run.finished_at) ?? (run.status === "running" ? now : null);
  return end === null ? null : end - start;
}

export function totalTokens(usage: Usage | undefined | null): number | null {
  if (!usage) return null;
  if (typeof usage.total_tokens === "number") return usage.total_tokens;
  const parts = [usage.prompt_tokens, usage.completion_tokens, usage.input_tokens, usage.output_tokens];
  const numbers = parts.filter((n): n is number => typeof n === "number");
  return numbers.length ? numbers.reduce((a, b) => a + b, 0) : null;
}

export function formatNumber(n: number | null | undefined): string {
  return n === null || n === undefined ? "—" : n.toLocaleString();
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function shortId(id: string): string {
  return id.length > 12 ? id.slice(0, 8) : id;
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
