"""RunState: the mutable state of one run (upstream's blackboard plus concept values).

Concept statuses are `empty`/`pending`/`complete`; item statuses `pending`/`in_progress`/
`completed`/`failed`; completion details `success`/`skipped`/`condition_not_met`.
Everything here is plain data and serializes to JSON for checkpoint snapshots.
"""

from __future__ import annotations

from typing import Any

from normcode_core.engine.reference import Reference

EMPTY, PENDING, COMPLETE = "empty", "pending", "complete"
ITEM_PENDING, IN_PROGRESS, COMPLETED, FAILED = "pending", "in_progress", "completed", "failed"
SUCCESS, SKIPPED, CONDITION_NOT_MET = "success", "skipped", "condition_not_met"

_REF_TAG = "__reference__"


def encode_value(value: Any) -> Any:
    """JSON-safe form of values held in state (References are tagged)."""
    if isinstance(value, Reference):
        return {_REF_TAG: value.to_json()}
    if isinstance(value, dict):
        return {k: encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if _REF_TAG in value and len(value) == 1:
            return Reference.from_json(value[_REF_TAG])
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


class RunState:
    def __init__(self) -> None:
        self.concept_statuses: dict[str, str] = {}
        self.references: dict[str, Reference] = {}
        self.item_statuses: dict[str, str] = {}
        self.item_details: dict[str, str] = {}
        self.execution_counts: dict[str, int] = {}  # since the item's last loop reset (upstream's count)
        self.total_executions: dict[str, int] = {}  # never reset: keys LLM records and sign ids
        self.truth_masks: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.reset_counts: dict[str, int] = {}
        self.concept_to_flow: dict[str, str] = {}
        self.shared: dict[str, Any] = {}

    # ------------------------------------------------------------ queries (handlers use these)

    def canonical(self, name: str) -> str:
        seen: set[str] = set()
        while name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        return name

    def concept_status(self, name: str) -> str:
        return self.concept_statuses.get(self.canonical(name), EMPTY)

    def is_complete(self, name: str) -> bool:
        return self.concept_status(name) == COMPLETE

    def reference(self, name: str) -> Reference | None:
        return self.references.get(name)

    def completion_detail_for_concept(self, name: str) -> str | None:
        flow_index = self.concept_to_flow.get(name)
        return self.item_details.get(flow_index) if flow_index else None

    def truth_mask(self, name: str) -> dict[str, Any] | None:
        return self.truth_masks.get(name)

    def item_status(self, flow_index: str) -> str:
        return self.item_statuses.get(flow_index, ITEM_PENDING)

    # ------------------------------------------------------------ updates (the runtime uses these)

    def set_concept_status(self, name: str, status: str) -> None:
        self.concept_statuses[self.canonical(name)] = status

    def set_item_status(self, flow_index: str, status: str) -> None:
        self.item_statuses[flow_index] = status
        if status == COMPLETED and flow_index not in self.item_details:
            self.item_details[flow_index] = SUCCESS

    def register_identity(self, a: str, b: str) -> None:
        ca, cb = self.canonical(a), self.canonical(b)
        if ca == cb:
            return
        sa, sb = self.concept_statuses.get(ca, EMPTY), self.concept_statuses.get(cb, EMPTY)
        canonical, alias = (cb, ca) if sb == COMPLETE and sa != COMPLETE else (ca, cb)
        self.aliases[alias] = canonical
        if COMPLETE in (sa, sb):
            self.concept_statuses[canonical] = COMPLETE
        if alias in self.concept_to_flow and canonical not in self.concept_to_flow:
            self.concept_to_flow[canonical] = self.concept_to_flow[alias]

    # ------------------------------------------------------------ snapshots

    def to_json(self, rank: dict[str, int]) -> dict[str, Any]:
        """Plain JSON; flow indices are written as ranks (they can be very long in deep plans)."""

        def by_rank(values: dict[str, Any]) -> list[list[Any]]:
            return [[rank[k], v] for k, v in values.items()]

        return {
            "concept_statuses": self.concept_statuses,
            "references": {k: v.to_json() for k, v in self.references.items()},
            "item_statuses": by_rank(self.item_statuses),
            "item_details": by_rank(self.item_details),
            "execution_counts": by_rank(self.execution_counts),
            "total_executions": by_rank(self.total_executions),
            "truth_masks": self.truth_masks,
            "aliases": self.aliases,
            "reset_counts": self.reset_counts,
            "concept_to_flow": {k: rank[v] for k, v in self.concept_to_flow.items()},
            "shared": encode_value(self.shared),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], flow_indices: list[str]) -> RunState:
        def by_flow(pairs: list[list[Any]]) -> dict[str, Any]:
            return {flow_indices[r]: v for r, v in pairs}

        state = cls()
        state.concept_statuses = dict(data["concept_statuses"])
        state.references = {k: Reference.from_json(v) for k, v in data["references"].items()}
        state.item_statuses = by_flow(data["item_statuses"])
        state.item_details = by_flow(data["item_details"])
        state.execution_counts = by_flow(data["execution_counts"])
        state.total_executions = by_flow(data["total_executions"])
        state.truth_masks = dict(data["truth_masks"])
        state.aliases = dict(data["aliases"])
        state.reset_counts = dict(data["reset_counts"])
        state.concept_to_flow = {k: flow_indices[r] for k, r in data["concept_to_flow"].items()}
        state.shared = decode_value(data["shared"])
        return state
