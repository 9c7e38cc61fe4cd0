// The API token, kept for the browser session only (server.api_token).
// When a request gets 401, `askForToken` opens the token dialog once and every waiting request
// continues with what the user typed.

const STORAGE_KEY = "normcode.apiToken";

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(STORAGE_KEY, token);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage can be unavailable (private mode); the token then lives only in this page.
  }
  memoryToken = token;
}

let memoryToken: string | null = null;

export function currentToken(): string | null {
  return getToken() ?? memoryToken;
}

export interface TokenPrompt {
  rejected: boolean; // a token was sent and refused
  submit: (token: string) => void;
}

type Listener = (prompt: TokenPrompt | null) => void;

let listeners: Listener[] = [];
let pending: { promise: Promise<string>; prompt: TokenPrompt } | null = null;

export function onTokenPrompt(listener: Listener): () => void {
  listeners.push(listener);
  listener(pending?.prompt ?? null);
  return () => {
    listeners = listeners.filter((l) => l !== listener);
  };
}

function notify(): void {
  for (const l of listeners) l(pending?.prompt ?? null);
}

export function askForToken(rejected: boolean): Promise<string> {
  if (pending) return pending.promise;
  let resolve!: (token: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  const prompt: TokenPrompt = {
    rejected,
    submit: (token: string) => {
      setToken(token);
      pending = null;
      notify();
      resolve(token);
    },
  };
  pending = { promise, prompt };
  notify();
  return promise;
}
