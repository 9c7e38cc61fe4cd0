// Asks for the API token when the server answers 401; the token is kept for this browser session.

import { useEffect, useRef, useState } from "react";
import { onTokenPrompt, type TokenPrompt } from "../auth";

export function TokenDialog() {
  const [prompt, setPrompt] = useState<TokenPrompt | null>(null);
  const [value, setValue] = useState("");
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => onTokenPrompt(setPrompt), []);
  useEffect(() => {
    if (prompt) input.current?.focus();
  }, [prompt]);

  if (!prompt) return null;
  return (
    <div className="modal-backdrop">
      <form
        className="modal"
        role="dialog"
        aria-modal="true"
        aria-labelledby="token-title"
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) {
            prompt.submit(value.trim());
            setValue("");
          }
        }}
      >
        <h2 id="token-title">API token required</h2>
        <p>
          This server requires an API token. It is kept for this browser session only.
        </p>
        {prompt.rejected && (
          <p className="error-text" role="alert">
            The token was rejected. Please check it and try again.
          </p>
        )}
        <label>
          Token
          <input
            ref={input}
            type="password"
            autoComplete="off"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            name="token"
          />
        </label>
        <div className="actions">
          <button type="submit" className="primary" disabled={!value.trim()}>
            Continue
          </button>
        </div>
      </form>
    </div>
  );
}
