"""Dependency-driven scheduling with upstream's cycle semantics, without rescanning.

Upstream runs cycles: each cycle scans the items that returned "pending" last cycle (in that
order) and then every other item in flow-index order, executing each pending item that is
ready; an item completed earlier in a cycle is visible to later items of the same cycle. An
item is ready when all its flow-index descendants are completed and its function and value
concepts are complete (with the `start_without_*` exceptions).

This module keeps the same observable order (so results and cycle counts match) but does the
work incrementally: readiness is tracked with counters updated when statuses change, and a
cycle only visits items that are ready, through a heap ordered by cycle position. Cost per
status change is O(affected items), not O(plan).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from normcode_core.engine.plan import Inference, Plan
from normcode_core.engine.state import COMPLETED, ITEM_PENDING, RunState

RETRY, REGULAR = 0, 1


@dataclass
class Graph:
    """Static structure of a plan's inferences (index = rank in flow-index order)."""

    items: list[Inference]
    rank: dict[str, int]
    parent: list[int]  # nearest existing ancestor, -1 for roots
    children: list[list[int]]
    subtree_end: list[int]  # descendants of i are items[i+1 : subtree_end[i]]
    consumers: dict[str, list[int]]  # concept name -> items using it as function or value
    dependents: list[list[int]]  # items consuming the concept item i produces (upstream's dependent map)

    @classmethod
    def build(cls, plan: Plan) -> Graph:
        items = list(plan.inferences)
        rank = {inf.flow_index: i for i, inf in enumerate(items)}
        parent = [-1] * len(items)
        children: list[list[int]] = [[] for _ in items]
        for i, inf in enumerate(items):
            parts = inf.flow_index.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                p = rank.get(".".join(parts[:cut]))
                if p is not None:
                    parent[i] = p
                    children[p].append(i)
                    break
        # Sorted by flow key, every subtree is contiguous: it ends where the first item that
        # is not a descendant begins.
        subtree_end = [0] * len(items)
        stack: list[int] = []
        for i in range(len(items)):
            while stack and not _is_descendant(items[i].flow_index, items[stack[-1]].flow_index):
                subtree_end[stack.pop()] = i
            stack.append(i)
        for j in stack:
            subtree_end[j] = len(items)
        consumers: dict[str, list[int]] = {}
        for i, inf in enumerate(items):
            names = set(inf.value_concepts)
            if inf.function_concept:
                names.add(inf.function_concept)
            for name in names:
                consumers.setdefault(name, []).append(i)
        dependents = [[c for c in consumers.get(inf.concept_to_infer, ()) if c != i] for i, inf in enumerate(items)]
        return cls(items, rank, parent, children, subtree_end, consumers, dependents)

    def descendants(self, i: int) -> range:
        return range(i + 1, self.subtree_end[i])


def _is_descendant(flow_index: str, ancestor: str) -> bool:
    return flow_index.startswith(ancestor + ".")


class Readiness:
    """Which pending items are ready, maintained incrementally from status changes."""

    def __init__(self, graph: Graph, state: RunState) -> None:
        self.graph = graph
        self.state = state
        n = len(graph.items)
        # bad[i]: children c that are not (completed and with all their descendants completed)
        self.bad = [0] * n
        self.good = [False] * n
        self.ready: set[int] = set()
        self.on_ready = lambda i: None  # set by the cycle runner
        for i in reversed(range(n)):
            self.good[i] = self._is_good(i)
            p = graph.parent[i]
            if p >= 0 and not self.good[i]:
                self.bad[p] += 1
        for i in range(n):
            self.refresh(i)

    def _is_good(self, i: int) -> bool:
        return self.state.item_statuses[self.graph.items[i].flow_index] == COMPLETED and self.bad[i] == 0

    def supports_complete(self, i: int) -> bool:
        return self.bad[i] == 0

    def status_changed(self, i: int) -> None:
        """Item i's status changed: update ancestors' counters and readiness."""
        self.refresh(i)
        self._propagate(i)

    def _propagate(self, i: int) -> None:
        while True:
            now = self._is_good(i)
            if now == self.good[i]:
                return
            self.good[i] = now
            p = self.graph.parent[i]
            if p < 0:
                return
            before = self.bad[p]
            self.bad[p] += -1 if now else 1
            if (before == 0) != (self.bad[p] == 0):
                self.refresh(p)
            i = p

    def concept_changed(self, name: str) -> None:
        for i in self.graph.consumers.get(name, ()):
            self.refresh(i)
        if self.state.aliases:
            canonical = self.state.canonical(name)
            for alias, target in self.state.aliases.items():
                if alias != name and self.state.canonical(target) == canonical:
                    for i in self.graph.consumers.get(alias, ()):
                        self.refresh(i)

    def refresh(self, i: int) -> None:
        ok = self.is_ready(i)
        if ok and i not in self.ready:
            self.ready.add(i)
            self.on_ready(i)
        elif not ok and i in self.ready:
            self.ready.discard(i)

    def is_ready(self, i: int) -> bool:
        inf = self.graph.items[i]
        state = self.state
        if state.item_statuses[inf.flow_index] != ITEM_PENDING:
            return False
        first = state.execution_counts.get(inf.flow_index, 0) == 0
        supports_needed = not inf.start_with_support_reference_only and not (
            inf.start_without_support_reference_only_once and first
        )
        if supports_needed and self.bad[i]:
            return False
        function_needed = not inf.start_without_function and not (inf.start_without_function_only_once and first)
        if function_needed and inf.function_concept and not state.is_complete(inf.function_concept):
            return False
        if inf.start_without_value or (inf.start_without_value_only_once and first):
            return True
        return values_ready(inf, state)


def values_ready(inf: Inference, state: RunState) -> bool:
    sources = (inf.working_interpretation.get("syntax") or {}).get("assign_source")
    if inf.sequence == "assigning" and isinstance(sources, list):
        source_names = set(sources)
        in_sources = [v for v in inf.value_concepts if v in source_names]
        others = [v for v in inf.value_concepts if v not in source_names]
        return any(state.is_complete(v) for v in in_sources) and all(state.is_complete(v) for v in others)
    return all(state.is_complete(v) for v in inf.value_concepts)


class CycleRunner:
    """Upstream's cycle order over the ready items.

    `next_item()` returns the next item to execute in the current cycle (None at its end);
    `finish(i, pending)` records its outcome; `start_next_cycle()` begins the next one.
    """

    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness
        self.cycle = 0
        self.retries: list[int] = []
        self.retry_pos: dict[int, int] = {}
        self.next_retries: list[int] = []
        self.pointer: tuple[int, int] = (RETRY, -1)
        self.executed_in_cycle = 0
        self.executed_this_cycle: set[int] = set()
        self._heap: list[tuple[int, int, int]] = []
        self._in_heap: set[int] = set()
        readiness.on_ready = self._became_ready

    def position(self, i: int) -> tuple[int, int]:
        k = self.retry_pos.get(i)
        return (RETRY, k) if k is not None else (REGULAR, i)

    def _push(self, i: int) -> None:
        if i in self._in_heap or i in self.executed_this_cycle:
            return
        pos = self.position(i)
        if pos > self.pointer:
            heapq.heappush(self._heap, (pos[0], pos[1], i))
            self._in_heap.add(i)

    def _became_ready(self, i: int) -> None:
        if self.cycle > 0:
            self._push(i)

    def start_next_cycle(self) -> None:
        self.cycle += 1
        self.retries = self.next_retries
        self.retry_pos = {i: k for k, i in enumerate(self.retries)}
        self.next_retries = []
        self.pointer = (RETRY, -1)
        self.executed_in_cycle = 0
        self.executed_this_cycle = set()
        self._heap = []
        self._in_heap = set()
        for i in self.readiness.ready:
            self._push(i)

    def peek(self) -> int | None:
        """The next item to execute in this cycle, without consuming it."""
        while self._heap:
            _, _, i = self._heap[0]
            if i in self.readiness.ready and i not in self.executed_this_cycle:
                return i
            heapq.heappop(self._heap)
            self._in_heap.discard(i)
        return None

    def take(self, i: int) -> None:
        entry = heapq.heappop(self._heap)
        assert entry[2] == i
        self._in_heap.discard(i)
        self.pointer = self.position(i)
        self.executed_in_cycle += 1
        self.executed_this_cycle.add(i)

    def finish(self, i: int, pending: bool) -> None:
        if pending:
            self.next_retries.append(i)

    # ---------------------------------------------------------------- snapshots

    def to_json(self) -> dict[str, object]:
        return {
            "cycle": self.cycle,
            "retries": self.retries,
            "next_retries": self.next_retries,
            "pointer": list(self.pointer),
            "executed_in_cycle": self.executed_in_cycle,
            "executed_this_cycle": sorted(self.executed_this_cycle),
        }

    def load_json(self, data: dict) -> None:
        self.cycle = int(data["cycle"])
        self.retries = list(data["retries"])
        self.retry_pos = {i: k for k, i in enumerate(self.retries)}
        self.next_retries = list(data["next_retries"])
        self.pointer = (int(data["pointer"][0]), int(data["pointer"][1]))
        self.executed_in_cycle = int(data["executed_in_cycle"])
        self.executed_this_cycle = set(data["executed_this_cycle"])
        self._heap = []
        self._in_heap = set()
        if self.cycle > 0:
            for i in self.readiness.ready:
                self._push(i)
