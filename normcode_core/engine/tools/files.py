"""File access for plans: reads inside the plan package (or its workspace copy), writes inside
the workspace only.

Results keep upstream's shapes because plans consume them as values:
`{'status': 'success', 'content': ...}`, `{'status': 'success', 'location': '<abs path>'}`,
`{'status': 'error', 'message': ...}`. Reported absolute paths are built from the run's
`base_dir_for_paths` exactly as given (never symlink-resolved), as upstream reports them.
A path that leaves the package or the workspace raises PathOutsidePlan and fails the step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from normcode_core.engine.step import PathOutsidePlan

MEMORY_FILE = "memorized.json"
# Values live in memory and in run.db: a plan cannot pull a huge file into them.
MAX_READ_BYTES = 64 * 1024 * 1024


class PathPolicy(Protocol):
    """What the file tool needs from the step context (StepContext provides it)."""

    base_dir_for_paths: str

    def relative_path(self, path: str | Path) -> str: ...

    def read_path(self, rel: str | Path) -> Path: ...

    def write_path(self, rel: str | Path) -> Path: ...


def _check_location(location: Any) -> None:
    if not isinstance(location, (str, os.PathLike)):
        # The same message Path() gives, which upstream reports as the error value.
        raise TypeError(f"expected str, bytes or os.PathLike object, not {type(location).__name__}")


class FileSystemTool:
    def __init__(self, paths: PathPolicy) -> None:
        self._paths = paths

    @property
    def base_dir(self) -> str:
        return self._paths.base_dir_for_paths

    def reported(self, rel: str) -> str:
        """The absolute path string a plan sees for a plan-relative path."""
        return str(Path(self.base_dir) / rel)

    def resolve_path(self, path: str) -> str:
        return self.reported(self._paths.relative_path(path))

    def read(self, location: Any) -> dict[str, Any]:
        try:
            _check_location(location)
            rel = self._paths.relative_path(location)
        except PathOutsidePlan:
            raise
        except (TypeError, ValueError) as exc:
            return {"status": "error", "message": str(exc)}
        try:
            with open(self._paths.read_path(rel), encoding="utf-8", errors="replace") as handle:
                if os.fstat(handle.fileno()).st_size > MAX_READ_BYTES:
                    return {"status": "error", "message": f"File too large to read as a value: {self.reported(rel)}"}
                return {"status": "success", "content": handle.read()}
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return {"status": "error", "message": f"File not found at {self.reported(rel)}"}
        except OSError as exc:
            return {"status": "error", "message": str(exc)}

    def exists(self, location: Any) -> bool:
        try:
            _check_location(location)
            rel = self._paths.relative_path(location)
        except PathOutsidePlan:
            raise
        except (TypeError, ValueError):
            return False
        return self._paths.read_path(rel).exists()

    def save(self, content: Any, location: Any) -> dict[str, Any]:
        if content is None:
            return {"status": "error", "message": f"Content cannot be None. Failed to save to {location}."}
        try:
            _check_location(location)
            rel = self._paths.relative_path(location)
        except PathOutsidePlan:
            raise
        except (TypeError, ValueError) as exc:
            return {"status": "error", "message": str(exc)}
        if isinstance(content, (list, dict)):
            text = json.dumps(content, indent=2, ensure_ascii=False)
        elif isinstance(content, str):
            text = content
        else:
            return {"status": "error", "message": f"write() argument must be str, not {type(content).__name__}"}
        try:
            self._paths.write_path(rel).write_text(text, encoding="utf-8")
        except OSError as exc:
            return {"status": "error", "message": str(exc)}
        return {"status": "success", "location": self.reported(rel)}

    def write(self, path: Any, content: Any) -> dict[str, Any]:
        return self.save(content=content, location=path)

    def save_from_dict(self, content_dict: Any, directory: Any) -> dict[str, Any]:
        if not isinstance(content_dict, dict):
            return {"status": "error", "message": "content_dict must be a dictionary."}
        saved: list[str] = []
        for filename, content in content_dict.items():
            if not isinstance(content, str):
                try:
                    content = json.dumps(content, indent=2)
                except (TypeError, ValueError):
                    continue
            result = self.save(content, str(PurePosixPath(str(directory)) / str(filename)))
            if result["status"] != "success":
                return {
                    "status": "error",
                    "message": f"Failed to save {filename}: {result['message']}",
                    "saved_locations": saved,
                }
            saved.append(result["location"])
        return {"status": "success", "saved_locations": saved, "saved_location": saved[0] if saved else None}

    # -- memorized parameters: a JSON key/value file, `memorized.json` in the plan by default ----

    def _memory_location(self, content: str) -> tuple[str, str]:
        key, location = content, MEMORY_FILE
        try:
            params = json.loads(content)
        except (json.JSONDecodeError, TypeError):
            return key, location
        if isinstance(params, dict) and "key" in params:
            key = params["key"]
            location = params.get("location", location)
        return key, location

    def read_memorized_value(self, content: str) -> dict[str, Any]:
        key, location = self._memory_location(content)
        rel = self._paths.relative_path(location)
        target = self._paths.read_path(rel)
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"status": "error", "message": f"Memorized parameters file not found at {self.reported(rel)}"}
        except json.JSONDecodeError:
            return {"status": "error", "message": f"Failed to decode JSON from {self.reported(rel)}"}
        value = data.get(key) if isinstance(data, dict) else None
        if value is None:
            return {"status": "error", "message": f"Key '{key}' not found in {self.reported(rel)}"}
        return {"status": "success", "content": value}

    def save_memorized_value(self, content: str) -> dict[str, Any]:
        try:
            params = json.loads(content)
        except (json.JSONDecodeError, TypeError):
            return {"status": "error", "message": "Invalid JSON content provided."}
        if not isinstance(params, dict) or "key" not in params or "value" not in params:
            return {"status": "error", "message": "Content must be a JSON object with 'key' and 'value'."}
        rel = self._paths.relative_path(params.get("location", MEMORY_FILE))
        data: dict[str, Any] = {}
        source = self._paths.read_path(rel)
        if source.is_file():
            try:
                loaded = json.loads(source.read_text(encoding="utf-8"))
                data = loaded if isinstance(loaded, dict) else {}
            except json.JSONDecodeError:
                data = {}
        data[params["key"]] = params["value"]
        self._paths.write_path(rel).write_text(json.dumps(data, indent=4), encoding="utf-8")
        return {"status": "success", "message": f"Successfully saved key '{params['key']}' to {self.reported(rel)}"}
