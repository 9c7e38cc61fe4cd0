"""Perceptual signs: how values are written inside references.

A sign is `%{norm}id(payload)`: an optional norm (how to perceive it, e.g. `file_location`),
an id (3 lowercase hex digits for generated values, or a name like `price` in ground data,
or empty), and the payload text. Truth values are id-less: `%{truth value}(true)`.

Upstream draws ids from uuid4, so every run differs. Here ids are deterministic: a hash of
the run seed, the step (flow index and execution number) and a key, so a resumed or repeated
run produces identical values.
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import json
import re
from itertools import count
from typing import Any, NamedTuple

# Norm names have no spaces, so `%{truth value}(...)` is deliberately *not* a parseable sign
# (upstream treats truth values as plain markers).
SIGN_PATTERN = re.compile(r"^%(\{([a-zA-Z0-9_]+)\})?([a-zA-Z0-9]*)\((.*)\)$", re.DOTALL)
TRUE_SIGN = "%{truth value}(true)"
FALSE_SIGN = "%{truth value}(false)"


class Sign(NamedTuple):
    norm: str | None
    id: str
    payload: str


def parse_sign(token: Any) -> Sign | None:
    """The parts of a sign, or None when `token` is not one."""
    if not isinstance(token, str) or not token.startswith("%"):
        return None
    match = SIGN_PATTERN.match(token)
    if not match:
        return None
    return Sign(norm=match.group(2), id=match.group(3), payload=match.group(4))


def is_sign(token: Any) -> bool:
    return parse_sign(token) is not None


def sign_payload(token: Any) -> Any:
    """The raw payload text of a sign; anything else is returned unchanged."""
    sign = parse_sign(token)
    return sign.payload if sign else token


_SCALARS = (str, int, float, bool, type(None))
_CACHED_PAYLOAD_CHARS = 256


def parse_payload(text: str) -> Any:
    """A Python literal if the text is one, else JSON if it is that, else the text itself."""
    if isinstance(text, str) and len(text) <= _CACHED_PAYLOAD_CHARS:
        value = _parse_short_payload(text)
        return value if isinstance(value, _SCALARS) else copy.deepcopy(value)
    return _parse_payload(text)


# Keyed by the text itself and never handing out a shared mutable value, so runs cannot leak
# into each other through it; short payloads (file names, numbers) repeat in every step.
@functools.lru_cache(maxsize=4096)
def _parse_short_payload(text: str) -> Any:
    return _parse_payload(text)


def _parse_payload(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError, RecursionError):
        return text


def strip_sign(token: Any) -> Any:
    """The payload of a sign, parsed as a literal or JSON when possible; non-signs unchanged."""
    sign = parse_sign(token)
    return parse_payload(sign.payload) if sign else token


def wrap(value: Any, sign_id: str = "", norm: str | None = None) -> str:
    """Make a sign; the payload is `str(value)` (so dicts appear as Python reprs, as upstream)."""
    text = str(value)
    return f"%{{{norm}}}{sign_id}({text})" if norm else f"%{sign_id}({text})"


def truth_sign(value: bool) -> str:
    return TRUE_SIGN if value else FALSE_SIGN


def sign_id(seed: str, *key: Any) -> str:
    """A deterministic 3-hex id for `key` under `seed`."""
    material = seed + "\x1f" + "\x1f".join(map(str, key))
    return hashlib.blake2b(material.encode("utf-8"), digest_size=4).hexdigest()[:3]


class SignIds:
    """Id source for one execution of one step.

    `at(*position)` depends only on the position (use it for element-wise work, where
    concurrent evaluation would make call order vary); `next()` counts calls (use it only in
    code that runs sequentially).
    """

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self._counter = count()

    def at(self, *position: Any) -> str:
        return sign_id(self.seed, "at", *position)

    def next(self) -> str:
        return sign_id(self.seed, "n", next(self._counter))
