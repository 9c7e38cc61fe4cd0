// A tiny hash router: `#/path?query`. Hash URLs work behind any static host or proxy prefix and
// need nothing from the server beyond index.html.

import { useEffect, useState } from "react";

export interface Location {
  path: string; // always starts with "/"
  params: URLSearchParams;
}

function readLocation(): Location {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [rawPath, rawQuery = ""] = hash.split("?", 2);
  const path = rawPath.startsWith("/") ? rawPath : `/${rawPath}`;
  return { path, params: new URLSearchParams(rawQuery) };
}

export function useLocation(): Location {
  const [location, setLocation] = useState(readLocation);
  useEffect(() => {
    const update = () => setLocation(readLocation());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return location;
}

export function href(path: string, params?: Record<string, string | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) if (value) search.set(key, value);
  const query = search.toString();
  return `#${path}${query ? `?${query}` : ""}`;
}

export function navigate(path: string, params?: Record<string, string | undefined>): void {
  window.location.hash = href(path, params);
}

/** Matches "/runs/:id" style patterns; returns the decoded parameters or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split("/").filter(Boolean);
  const got = path.split("/").filter(Boolean);
  if (want.length !== got.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(":")) out[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return out;
}
