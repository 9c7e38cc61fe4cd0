"""Wire format between the engine and the script worker: tagged JSON frames.

Values cross the process boundary as JSON, never pickle: unpickling bytes produced by an
untrusted script would let that script run code inside the server. Containers keep their
Python type (tuple, set, bytes, non-string dict keys); any other object arrives as an
`Opaque` stand-in that keeps the object's `str()` and `repr()`, which is all the engine
ever does with script results (values become sign payloads through `str()`).

This module is loaded by the worker by file path, so it imports only the standard library.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `typing` costs the worker's start-up ~3 ms; annotations are strings here
    from typing import Any, BinaryIO

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 * 1024 * 1024


class Opaque:
    """A script result that is not plain data, kept as its printed forms."""

    __slots__ = ("representation", "text", "type_name")

    def __init__(self, type_name: str, text: str, representation: str) -> None:
        self.type_name = type_name
        self.text = text
        self.representation = representation

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.representation

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and (self.type_name, self.text) == (other.type_name, other.text)

    def __hash__(self) -> int:
        return hash((self.type_name, self.text))


def encode(value: Any) -> Any:
    """Python value -> JSON-compatible tree (tags are one-key dicts whose key starts with '$')."""
    if value is None or isinstance(value, (bool, int, float)):
        if type(value) in (bool, int, float) or value is None:
            return value
        return _opaque(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(item) for item in value]}
    if isinstance(value, frozenset):
        return {"$frozenset": [encode(item) for item in value]}
    if isinstance(value, set):
        return {"$set": [encode(item) for item in value]}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Opaque):
        return {"$opaque": [value.type_name, value.text, value.representation]}
    return _opaque(value)


def _opaque(value: Any) -> dict:
    try:
        text = str(value)
    except Exception as exc:  # noqa: BLE001 - a broken __str__ must not break the transport
        text = f"<unprintable {type(value).__name__}: {exc}>"
    try:
        representation = repr(value)
    except Exception as exc:  # noqa: BLE001 - same for __repr__
        representation = f"<unprintable {type(value).__name__}: {exc}>"
    return {"$opaque": [type(value).__name__, text, representation]}


def decode(tree: Any) -> Any:
    """Inverse of `encode`."""
    if isinstance(tree, list):
        return [decode(item) for item in tree]
    if not isinstance(tree, dict):
        return tree
    ((tag, body),) = tree.items()
    if tag == "$dict":
        return {_hashable(decode(k)): decode(v) for k, v in body}
    if tag == "$tuple":
        return tuple(decode(item) for item in body)
    if tag == "$set":
        return {_hashable(decode(item)) for item in body}
    if tag == "$frozenset":
        return frozenset(_hashable(decode(item)) for item in body)
    if tag == "$bytes":
        return base64.b64decode(body)
    if tag == "$opaque":
        return Opaque(*body)
    raise ValueError(f"unknown tag {tag!r} in sandbox frame")


def _hashable(value: Any) -> Any:
    return value if not isinstance(value, (list, dict, set)) else Opaque(type(value).__name__, str(value), repr(value))


def pack(message: dict) -> bytes:
    data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(len(data)) + data


def unpack_header(header: bytes) -> int:
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"sandbox frame of {size} bytes exceeds the limit")
    return size


def unpack_body(body: bytes) -> dict:
    return json.loads(body.decode("utf-8"))


def read_frame(stream: BinaryIO) -> dict | None:
    """Blocking read of one frame (worker side); None at end of stream."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(stream, unpack_header(header))
    if body is None:
        return None
    return unpack_body(body)


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
