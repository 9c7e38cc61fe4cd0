"""`looping` (`*.` / `*every`): run the loop body once per element of the loop base.

Working interpretation `syntax`: `LoopBaseConcept` (the collection), `ConceptToInfer` ([the
per-element result collected from the loop's function concept]), `CurrentLoopBaseConcept`
(the per-iteration concept, default `<base>*`), `group_base` (axis iterated over),
`loop_index` (which loop memory), optional `InLoopConcept` (concepts carried between
iterations).

One execution: find the next element not yet looped over, publish it as the current element
(a context concept), and record the body's result for the element that was current. The run
then resets the body and executes the loop again, until every element has a result; the loop
concept is then the results joined along the base's axis. The loop memory lives in the run's
shared state under `<loop_index>_<LoopBaseConcept>` (as upstream's workspace).

Upstream rescans every element on every iteration (quadratic); here lookups are indexed and a
cursor remembers how far the loop got, so a loop over N elements costs O(N).
"""

from __future__ import annotations

from typing import Any

from normcode_core.engine.reference import NONE_AXIS, SKIP, Reference, join
from normcode_core.engine.sequences.grouping import group_across
from normcode_core.engine.step import StepContext, StepResult


async def run(ctx: StepContext) -> StepResult:
    return iterate(ctx, quantifying=False)


def freeze(value: Any) -> Any:
    """A hashable stand-in with the same equality as the value (lists, dicts, scalars)."""
    if isinstance(value, list):
        return ("l", tuple(freeze(v) for v in value))
    if isinstance(value, dict):
        return ("d", frozenset((k, freeze(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return ("r", repr(value))
    return value


def is_empty(ref: Reference | None) -> bool:
    if ref is None or ref.tensor is None:
        return True
    return all(v is None for v in _flat(ref.tensor if isinstance(ref.tensor, list) else [ref.tensor]))


def _flat(value: Any) -> list[Any]:
    out: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def empty_reference() -> Reference:
    return Reference([], ())


class ToLoop:
    """The collection being looped over, with indexed access to its k-th element."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self._elements: dict[int, Reference | None] = {}
        self._keys: set[Any] | None = None

    def element(self, k: int) -> Reference | None:
        """The k-th element (None past the end), as upstream's per-index selection."""
        if k in self._elements:
            return self._elements[k]

        def pick(node: Any, depth: int) -> Any:
            if depth == len(self.ref.shape):
                if isinstance(node, str) and node == SKIP:
                    return SKIP
                if isinstance(node, list) and 0 <= k < len(node):
                    return node[k]
                return None
            return [pick(sub, depth + 1) for sub in node]

        data = pick(self.ref.data, 0)
        flat = _flat(data)
        if all(v is None or (isinstance(v, str) and v == SKIP) for v in flat):
            element = None
        else:
            element = Reference(list(self.ref.axes), self.ref.shape).with_data(data).without_none_axis()
        self._elements[k] = element
        return element

    def keys(self) -> set[Any]:
        if self._keys is None:
            keys = set()
            k = 0
            while (element := self.element(k)) is not None:
                keys.add(freeze(element.tensor))
                k += 1
            self._keys = keys
        return self._keys

    def check_elements_are_lists(self) -> None:
        if self.ref.tensor:
            for position, element in enumerate(self.ref.tensor):
                if not isinstance(element, list):
                    raise TypeError(f"Element at index {position} is not a list: {element}")


class LoopMemory:
    """Upstream's per-loop workspace: entry k (loop index k+1) maps concept names to references."""

    def __init__(self, entries: list[dict[str, Reference]], base: str) -> None:
        self.entries = entries
        self.base = base
        self.index: dict[Any, int] = {}
        for position, entry in enumerate(entries):
            if base in entry:
                self.index.setdefault(freeze(entry[base].tensor), position)
        self.size = len(entries)
        self.next_cursor = 0  # elements before it are all stored (for one ToLoop)
        self.done_cursor = 0  # elements before it all have the inferred concept
        self.cursor_owner: ToLoop | None = None

    def find(self, ref: Reference) -> int | None:
        return self.index.get(freeze(ref.tensor))

    def store_base(self, ref: Reference) -> int:
        position = self.find(ref)
        if position is None:
            position = len(self.entries)
            self.entries.append({})
            self.index[freeze(ref.tensor)] = position
        self.entries[position][self.base] = ref
        self.size = len(self.entries)
        return position

    def store(self, base_ref: Reference, name: str, ref: Reference) -> None:
        position = self.find(base_ref)
        if position is None:
            raise ValueError(f"{base_ref.tensor!r} is not in the loop memory")
        self.entries[position][name] = ref

    def _own(self, to_loop: ToLoop) -> None:
        if self.cursor_owner is not to_loop:
            self.cursor_owner = to_loop
            self.next_cursor = 0
            self.done_cursor = 0

    def next_element(self, to_loop: ToLoop, current: Reference | None) -> Reference | None:
        self._own(to_loop)
        k = self.next_cursor
        advancing = True
        while True:
            element = to_loop.element(k)
            if element is None:
                return None
            stored = self.find(element) is not None
            if advancing and stored:
                self.next_cursor = k + 1
            else:
                advancing = False
            is_current = current is not None and element.tensor == current.tensor
            if not is_current and not stored:
                return element
            k += 1

    def all_looped(self, to_loop: ToLoop, name: str | None) -> bool:
        to_loop.check_elements_are_lists()
        self._own(to_loop)
        k = self.done_cursor
        while True:
            element = to_loop.element(k)
            if element is None:
                return True
            position = self.find(element)
            if position is None:
                return False
            if name is not None and name not in self.entries[position]:
                return False
            self.done_cursor = k + 1
            k += 1

    def carried(self, name: str, carry: int, initial: Reference) -> Reference:
        if carry > 0:
            retrieval = len(self.entries) - (carry - 1)  # loop indices are 1-based
            if retrieval <= 0:
                return initial
            entry = self.entries[retrieval - 1] if retrieval - 1 < len(self.entries) else None
            if entry is not None and name in entry:
                return entry[name]
        return empty_reference()

    def combined(self, to_loop: ToLoop, name: str, axis: str) -> Reference | None:
        keys = to_loop.keys()
        found = [
            entry[name]
            for entry in self.entries
            if name in entry and self.base in entry and freeze(entry[self.base].tensor) in keys
        ]
        return join(found, axis) if found else None


def _memory(ctx: StepContext, key: str, base: str) -> LoopMemory:
    entries = ctx.state.shared.get(key)
    if not isinstance(entries, list):
        entries = []
    memo_key = f"loop-memory:{ctx.flow_index}:{key}"
    memory = ctx.memo.get(memo_key)
    if memory is None or memory.entries is not entries or memory.size != len(entries):
        memory = LoopMemory(entries, base)
        ctx.memo[memo_key] = memory
    return memory


def _to_loop(ctx: StepContext, quantifying: bool, syntax: dict[str, Any]) -> ToLoop | None:
    sources = [v.reference for v in ctx.values if v.reference is not None]
    if not sources:
        return None
    memo_key = f"loop-source:{ctx.flow_index}"
    cached = ctx.memo.get(memo_key)
    if cached is not None and len(cached[0]) == len(sources) and all(a is b for a, b in zip(cached[0], sources)):
        return cached[1]
    group_base = syntax.get("group_base")
    if quantifying:
        axis = next((v.concept.axis_name for v in ctx.values if v.name == group_base), None) if group_base else None
    else:
        axis = group_base
    if not axis and sources[0].axes:
        axis = sources[0].axes[0]
    ref = group_across([s.copy() for s in sources], [axis] if axis else [], None)
    base = syntax.get("LoopBaseConcept")
    star = f"{base}*" if base else None
    star_axis = next((c.concept.axis_name for c in ctx.context if c.name == star), None)
    if star_axis:
        ref.axes = [star_axis] if ref.axes == [NONE_AXIS] else [*ref.axes, star_axis]
    to_loop = ToLoop(ref)
    ctx.memo[memo_key] = (sources, to_loop)
    return to_loop


def _in_loop_concepts(spec: Any) -> dict[str, dict[str, Any]]:
    resolved: dict[str, dict[str, Any]] = {}
    if not isinstance(spec, dict):
        return resolved
    for name, value in spec.items():
        if isinstance(value, int):
            resolved[name] = {"carry_over": value, "base_name": name.removesuffix("*")}
        elif isinstance(value, dict):
            current = value.get("current_name") or f"{name}*"
            resolved[current] = {"carry_over": value.get("carry_over", 0), "base_name": name}
    return resolved


def _rename_axes(combined: Reference, base_axes: list[str], quantifying: bool) -> Reference:
    axes = list(combined.axes)
    if not axes or not base_axes:
        return combined
    axes[0] = base_axes[0]
    if quantifying:
        axes = ["value" if a == NONE_AXIS else a for a in axes]
        if len(axes) == len(set(axes)):
            combined.axes = axes
        return combined
    shape = list(combined.shape)
    drop = {i for i, a in enumerate(axes) if a == NONE_AXIS and i < len(shape) and shape[i] == 1}
    if not drop:
        if len(axes) == len(set(axes)):
            combined.axes = axes
        return combined

    def collapse(data: Any, depth: int) -> Any:
        if depth >= len(shape):
            return data
        if depth in drop:
            if isinstance(data, list) and len(data) == 1:
                return collapse(data[0], depth + 1)
            return data
        if isinstance(data, list):
            return [collapse(item, depth + 1) for item in data]
        return data

    data = collapse(combined.tensor, 0)
    kept_axes = [a for i, a in enumerate(axes) if i not in drop]
    kept_shape = tuple(s for i, s in enumerate(shape) if i not in drop)
    combined.axes = kept_axes or [NONE_AXIS]
    combined.shape = kept_shape or (1,)
    return combined.with_data(data if isinstance(data, list) else [data])


def iterate(ctx: StepContext, quantifying: bool) -> StepResult:
    syntax = ctx.working_interpretation.get("syntax") or {}
    base_name = syntax.get("LoopBaseConcept")
    targets = syntax.get("ConceptToInfer") or []
    target = targets[0] if targets else None
    loop_index = syntax.get("quantifier_index" if quantifying else "loop_index", 0)
    key = f"{loop_index}_{base_name}"

    to_loop = _to_loop(ctx, quantifying, syntax)
    if not base_name or not target or to_loop is None:
        complete = False
        if base_name and to_loop is not None:
            complete = _memory(ctx, key, base_name).all_looped(to_loop, target or "")
        return StepResult(iteration_complete=complete)

    memory = _memory(ctx, key, base_name)
    current_name = syntax.get("CurrentLoopBaseConcept") or f"{base_name}*"
    in_loop = _in_loop_concepts(syntax.get("InLoopConcept"))
    current_ctx = next((c for c in ctx.context if c.name == current_name), None)
    current_opt = current_ctx.reference if current_ctx is not None else None
    function_ref = ctx.function.reference if ctx.function is not None else None

    next_opt = memory.next_element(to_loop, current_opt)
    is_new = False
    if current_opt is not None:
        if not is_empty(current_opt) and memory.find(current_opt) is None:
            is_new, current = True, current_opt
        else:
            current = next_opt
    else:
        current = next_opt
    next_ref = next_opt if next_opt is not None else empty_reference()
    current = current if current is not None else empty_reference()
    function_ref = function_ref if function_ref is not None else empty_reference()

    if is_new and not is_empty(current):
        memory.store_base(current)
        if not is_empty(function_ref):
            memory.store(current, target, function_ref)

    context_updates: dict[str, Reference] = {}
    for c in ctx.context:
        if c.name == current_name:
            context_updates[c.name] = next_ref.copy()
        elif c.name in in_loop:
            initial = c.reference if c.reference is not None else empty_reference()
            if is_new and not is_empty(current):
                memory.store(current, c.name, initial)
            context_updates[c.name] = memory.carried(c.name, int(in_loop[c.name]["carry_over"]), initial)

    complete = memory.all_looped(to_loop, target)
    reference = None
    if is_new and complete:
        axis = target if quantifying else (syntax.get("group_base") or target)
        combined = memory.combined(to_loop, target, axis)
        if combined is not None:
            base_ref = next((v.reference for v in ctx.values if v.name == base_name and v.reference is not None), None)
            reference = _rename_axes(combined, list(base_ref.axes) if base_ref is not None else [], quantifying)
    return StepResult(
        reference=reference,
        context_updates=context_updates,
        iteration_complete=complete,
        shared_updates={key: memory.entries},
    )
