import type { IoSpec } from "../api";

export function IoList({ title, items }: { title: string; items: Record<string, IoSpec> }) {
  const names = Object.keys(items);
  return (
    <div className="io">
      <h4>{title}</h4>
      {names.length === 0 ? (
        <p className="muted">none</p>
      ) : (
        <ul>
          {names.map((name) => (
            <li key={name}>
              <code>{name}</code>
              {items[name]?.type && <span className="muted"> {String(items[name].type)}</span>}
              {items[name]?.description && <div className="muted small">{String(items[name].description)}</div>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
