"""Turning value concepts into the input dicts a step function is applied to.

For each input combination the step function receives `{"input_1": ..., "input_2": ...}` plus
instruction keys (`prompt_template`, `script_location`, `save_path`, ...) produced by
perception. The rules follow upstream exactly, because prompts and results depend on them:

1. `value_order` ({concept: position}) picks the value concepts, in position order; a value
   selector with `source_concept` derives an input from another concept (index/key/unpack)
   and applies perception options (strip, branch, re-wrap).
2. Each element is flattened and perceived (signs read into content); one item stays a string,
   several stay a list.
3. A "packed" input (the default) wraps each element along the reference's *first* axis. On a
   reference with more axes this makes the elements skip values (upstream behaviour that plans
   such as gold's `<signals are neutral>` depend on).
4. The cross product of all inputs gives one input list per combination; lists that are not
   packed are spread into several inputs, and instruction strings become their own keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from normcode_core.engine.reference import Reference, cross_product, element_action
from normcode_core.engine.signs import parse_sign
from normcode_core.engine.step import ConceptValue
from normcode_core.engine.tools.perception import (
    INSTRUCTION_PREFIX,
    SPECIAL_KEYS,
    Perception,
)


class UnpackedList(list):
    """A selection result to be spread into several inputs."""


@dataclass(frozen=True)
class Packed:
    """An input kept as a single value even when it is a list."""

    value: Any


def select(selector: dict[str, Any]):
    """The structural part of a value selector: index/key selection, optional unpacking."""
    index = selector.get("index")
    key = selector.get("key")
    unpack = selector.get("unpack", False)
    unpack_before = selector.get("unpack_before_selection", False)

    def selected(element: Any) -> Any:
        if unpack_before and isinstance(element, list):
            return UnpackedList(item.get(key) if key is not None and isinstance(item, dict) else item for item in element)
        value = element
        if index is not None and isinstance(value, list) and len(value) > index:
            value = value[index]
        if key is not None and isinstance(value, dict):
            value = value.get(key)
        if unpack and isinstance(value, list):
            return UnpackedList(value)
        return value

    return selected


def ordered_inputs(
    values: list[ConceptValue], value_order: dict[str, Any] | None, selectors: dict[str, Any] | None
) -> list[tuple[Reference, dict[str, Any]]]:
    """(reference, selector) per ordered input; a concept listed twice is used twice in turn."""
    available = [v for v in values if v.reference is not None]
    used = [False] * len(available)
    chosen: list[tuple[Reference, dict[str, Any]]] = []
    for name, _position in sorted((value_order or {}).items(), key=lambda item: item[1]):
        selector = (selectors or {}).get(name) or {}
        if "source_concept" in selector:
            source = next((v for v in available if v.name == selector["source_concept"]), None)
            if source is not None:
                chosen.append((source.reference, selector))
            continue
        for i, value in enumerate(available):
            if not used[i] and value.name == name:
                used[i] = True
                chosen.append((value.reference, selector))
                break
    return chosen


def _is_branch_output(value: dict) -> bool:
    """A dict of perceived contents (from a branch selector), not a container of signs."""
    return bool(value) and not any(isinstance(v, str) and parse_sign(v) for v in value.values())


def perceive_element(element: Any, perception: Perception) -> Any:
    if isinstance(element, dict) and _is_branch_output(element):
        return element
    if isinstance(element, list) and all(isinstance(i, dict) and _is_branch_output(i) for i in element):
        return element
    flat: list[Any] = []

    def flatten(item: Any) -> None:
        if isinstance(item, list):
            for sub in item:
                flatten(sub)
        elif isinstance(item, dict) and not _is_branch_output(item):
            for sub in item.values():
                flatten(sub)
        else:
            flat.append(item)

    flatten(element)
    resolved = [item if isinstance(item, dict) else perception.perceive(item) for item in flat]
    if any(isinstance(item, str) and item.startswith(INSTRUCTION_PREFIX) for item in resolved):
        return resolved
    if not resolved:
        return ""
    if any(isinstance(item, dict) for item in resolved):
        return resolved[0] if len(resolved) == 1 else resolved
    if len(resolved) > 1:
        return resolved
    return str(resolved[0])


def input_dict(combination: list[Any]) -> dict[str, Any]:
    spread: list[Any] = []
    for value in combination:
        if isinstance(value, Packed):
            spread.append(value.value)
        elif isinstance(value, list):
            spread.extend(value)
        else:
            spread.append(value)
    result: dict[str, Any] = {}
    inputs: list[Any] = []
    for value in spread:
        key = _instruction_key(value)
        if key is None:
            inputs.append(value)
        else:
            result[key] = value[len(SPECIAL_KEYS[key]) : -1]
    for number, value in enumerate(inputs, 1):
        result[f"input_{number}"] = value
    return result


def _instruction_key(value: Any) -> str | None:
    if isinstance(value, str) and value.endswith("}"):
        for key, marker in SPECIAL_KEYS.items():
            if value.startswith(marker):
                return key
    return None


def build_inputs(
    values: list[ConceptValue],
    working_interpretation: dict[str, Any],
    perception: Perception,
) -> Reference | None:
    """The reference of input dicts, or None when the step takes no inputs."""
    chosen = ordered_inputs(values, working_interpretation.get("value_order"), working_interpretation.get("value_selectors"))
    if not chosen:
        return None
    processed: list[Reference] = []
    for reference, selector in chosen:
        if "source_concept" in selector:
            selected = element_action(select(selector), [reference.copy()])
            reference = element_action(lambda e, s=selector: _transform(e, s, perception), [selected])
        perceived = element_action(lambda e: perceive_element(e, perception), [reference])
        if selector.get("packed", True) and perceived.tensor:
            perceived = perceived.with_data([Packed(element) for element in perceived.tensor])
        processed.append(perceived)
    combined = cross_product(processed)
    return element_action(input_dict, [combined])


def _transform(element: Any, selector: dict[str, Any], perception: Perception) -> Any:
    if isinstance(element, UnpackedList):
        return UnpackedList(perception.transform(item, selector) for item in element)
    return perception.transform(element, selector)
