"""Compiled NormCode plans: the model, loading from a directory or .zip, and validation.

A plan package holds `manifest.json`, a concept repo and an inference repo (upstream's
compiled JSON format), optionally `inputs.json`, and provisions (paradigms, prompts, scripts,
data). `load_plan` refuses an invalid package with every problem listed; `validate_plan`
returns the problems without raising.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import tempfile
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from normcode_core.engine.signs import parse_sign

MANIFEST = "manifest.json"
DEFAULT_CONCEPTS = "concept_repo.json"
DEFAULT_INFERENCES = "inference_repo.json"

# Concept types accepted by upstream's Concept class (old and new unified syntax).
CONCEPT_TYPES = frozenset(
    {
        "<=", "<-", "$what?", "$how?", "$when?", "$=", "$::", "$.", "$%", "$+", "$-",
        "@by", "@if", "@if!", "@onlyIf", "@ifOnlyIf", "@after", "@before", "@with", "@while",
        "@until", "@afterstep", "@:'", "@:!", "@.", "&in", "&across", "&set", "&pair", "&[{}]",
        "&[#]", "*every", "*some", "*count", "*.", "{}", "::", "<>", "<{}>", "({})", "::({})",
        "[]", ":S:", ":>:", ":<:", "{}?", "<:_>",
    }
)

ITERATING_SEQUENCES = frozenset({"looping", "quantifying"})

# Keys that compiled repos carry over from a previous run's in-place mutation (ignored).
RUNTIME_LEFTOVER_KEYS = ("workspace", "flow_info", "blackboard")

# Sign norms whose payload is a path inside the package that must exist when the plan starts.
REQUIRED_FILE_NORMS = frozenset({"script_location", "prompt_location"})
# Sequences that write the script at their `script_location` when it does not exist yet.
SCRIPT_GENERATING_SEQUENCES = frozenset(
    {"imperative_python", "imperative_python_indirect", "judgement_python", "judgement_python_indirect"}
)
# Sign norms whose payload is a path (must stay inside the package / workspace).
PATH_NORMS = frozenset({"script_location", "prompt_location", "file_location", "save_path", "save_dir"})


class PlanInvalid(Exception):
    """The package cannot run; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "; ".join(str(p) for p in problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"invalid plan: {lines}{more}")


@dataclass(frozen=True)
class Problem:
    file: str
    entry: str
    field: str
    message: str

    def __str__(self) -> str:
        where = ":".join(part for part in (self.file, self.entry, self.field) if part)
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "entry": self.entry, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class Concept:
    """One concept-repo entry (metadata only; values live in the run state)."""

    name: str
    type: str
    id: str = ""
    axis_name: str = ""
    natural_name: str = ""
    context: str = ""
    description: str | None = None
    is_ground: bool = False
    is_final: bool = False
    is_invariant: bool = False
    reference_data: Any = None
    reference_axis_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Inference:
    """One inference-repo entry."""

    flow_index: str
    sequence: str
    concept_to_infer: str
    function_concept: str | None
    value_concepts: tuple[str, ...]
    context_concepts: tuple[str, ...]
    working_interpretation: dict[str, Any]
    start_without_value: bool = False
    start_without_value_only_once: bool = False
    start_without_function: bool = False
    start_without_function_only_once: bool = False
    start_with_support_reference_only: bool = False
    start_without_support_reference_only_once: bool = False
    agent_name: str | None = None

    @property
    def flow_key(self) -> tuple[int, ...]:
        return flow_key(self.flow_index)


@dataclass
class Plan:
    root: Path
    manifest: dict[str, Any]
    concepts: dict[str, Concept]
    inferences: list[Inference]  # sorted by flow index
    inputs: dict[str, Any]  # from the manifest's entry.inputs file ("_" keys removed)
    fingerprint: str = ""  # sha256 of the repo and inputs files: identifies the plan a run.db belongs to

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.root.name)

    @property
    def version(self) -> str:
        return str(self.manifest.get("version") or "")

    @property
    def paradigm_dir(self) -> Path | None:
        rel = (self.manifest.get("provisions") or {}).get("paradigms")
        if rel:
            return self.root / rel
        default = self.root / "provisions" / "paradigms"
        return default if default.is_dir() else None

    def final_concepts(self) -> list[str]:
        return [c.name for c in self.concepts.values() if c.is_final]


def flow_key(flow_index: str) -> tuple[int, ...]:
    """Numeric sort key of a flow index ('1.10' after '1.9')."""
    try:
        return tuple(int(part) for part in str(flow_index).split("."))
    except ValueError:
        return (10**9,)


# ------------------------------------------------------------------------ loading


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, file: str, entry: str, field_name: str, message: str) -> None:
        self.problems.append(Problem(file, entry, field_name, message))


def _read_json(root: Path, rel: str, problems: _Collector, digest: Any = None) -> Any:
    path = root / rel
    if not path.is_file():
        problems.add(rel, "", "", "file not found")
        return None
    try:
        raw = path.read_bytes()
        if digest is not None:
            digest.update(rel.encode("utf-8") + b"\0" + raw + b"\0")
        return json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.add(rel, "", "", f"not valid JSON: {exc}")
        return None


def unsafe_relative_path(path: str) -> str | None:
    """Why `path` may not be used inside a package (absolute or escaping), else None."""
    if not isinstance(path, str) or not path:
        return None
    return _unsafe_relative_text(path)


@functools.lru_cache(maxsize=4096)  # a pure function of the text: safe to share between runs
def _unsafe_relative_text(path: str) -> str | None:
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path):
        return "absolute path"
    parts = PurePosixPath(path.replace("\\", "/")).parts
    depth = 0
    for part in parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return "path escapes the package"
        elif part not in (".", ""):
            depth += 1
    return None


def _bool(value: Any) -> bool:
    # Compiled repos use null for "not set": null means false.
    return bool(value) if value is not None else False


def _parse_concepts(data: Any, file: str, problems: _Collector) -> dict[str, Concept]:
    concepts: dict[str, Concept] = {}
    if not isinstance(data, list):
        if data is not None:
            problems.add(file, "", "", "must be a JSON list of concepts")
        return concepts
    for position, item in enumerate(data):
        label = f"#{position}"
        if not isinstance(item, dict):
            problems.add(file, label, "", "concept entry must be an object")
            continue
        name = item.get("concept_name")
        if not isinstance(name, str) or not name:
            problems.add(file, label, "concept_name", "missing concept name")
            continue
        label = name
        ctype = item.get("type")
        if ctype not in CONCEPT_TYPES:
            problems.add(file, label, "type", f"unknown concept type {ctype!r}")
        if name in concepts:
            problems.add(file, label, "concept_name", "duplicate concept name")
        axis_names = item.get("reference_axis_names")
        if axis_names is not None and not (
            isinstance(axis_names, list) and all(isinstance(a, str) for a in axis_names)
        ):
            problems.add(file, label, "reference_axis_names", "must be a list of axis names")
            axis_names = None
        axis_name = item.get("axis_name") or name
        concepts[name] = Concept(
            name=name,
            type=str(ctype),
            id=str(item.get("id") or ""),
            axis_name=axis_name,
            natural_name=item.get("natural_name") or axis_name,
            context=item.get("context") or "",
            description=item.get("description"),
            is_ground=_bool(item.get("is_ground_concept")),
            is_final=_bool(item.get("is_final_concept")),
            is_invariant=_bool(item.get("is_invariant")),
            reference_data=item.get("reference_data"),
            reference_axis_names=tuple(axis_names) if axis_names is not None else None,
        )
    return concepts


def _parse_inferences(data: Any, file: str, problems: _Collector) -> list[Inference]:
    inferences: list[Inference] = []
    if not isinstance(data, list):
        if data is not None:
            problems.add(file, "", "", "must be a JSON list of inferences")
        return inferences
    for position, item in enumerate(data):
        label = f"#{position}"
        if not isinstance(item, dict):
            problems.add(file, label, "", "inference entry must be an object")
            continue
        flow_index = (item.get("flow_info") or {}).get("flow_index")
        if not isinstance(flow_index, str) or not re.fullmatch(r"\d+(\.\d+)*", flow_index):
            problems.add(file, label, "flow_info.flow_index", f"missing or malformed flow index {flow_index!r}")
            continue
        label = flow_index
        sequence = item.get("inference_sequence")
        if not isinstance(sequence, str):
            problems.add(file, label, "inference_sequence", "missing inference sequence")
            continue
        target = item.get("concept_to_infer")
        if not isinstance(target, str):
            problems.add(file, label, "concept_to_infer", "missing concept to infer")
            continue
        wi = item.get("working_interpretation") or {}
        if not isinstance(wi, dict):
            problems.add(file, label, "working_interpretation", "must be an object")
            wi = {}
        wi = {k: v for k, v in wi.items() if k not in RUNTIME_LEFTOVER_KEYS}
        iterating = sequence in ITERATING_SEQUENCES

        def flag(key: str, default: bool = False, item: dict[str, Any] = item) -> bool:
            return _bool(item.get(key, default))

        inferences.append(
            Inference(
                flow_index=flow_index,
                sequence=sequence,
                concept_to_infer=target,
                function_concept=item.get("function_concept") or None,
                value_concepts=tuple(item.get("value_concepts") or ()),
                context_concepts=tuple(item.get("context_concepts") or ()),
                working_interpretation=wi,
                start_without_value=flag("start_without_value"),
                start_without_value_only_once=flag("start_without_value_only_once", iterating),
                start_without_function=flag("start_without_function"),
                start_without_function_only_once=flag("start_without_function_only_once", iterating),
                start_with_support_reference_only=flag("start_with_support_reference_only"),
                start_without_support_reference_only_once=flag(
                    "start_without_support_reference_only_once", iterating
                ),
                agent_name=item.get("agent_name"),
            )
        )
    inferences.sort(key=lambda inf: inf.flow_key)
    return inferences


def _read_plan(root: Path, problems: _Collector) -> Plan:
    manifest_path = root / MANIFEST
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        loaded = _read_json(root, MANIFEST, problems)
        if isinstance(loaded, dict):
            manifest = loaded
        elif loaded is not None:
            problems.add(MANIFEST, "", "", "must be a JSON object")
    elif not (root / DEFAULT_CONCEPTS).is_file():
        problems.add(MANIFEST, "", "", "file not found (and no concept_repo.json either)")
    entry = manifest.get("entry") or {}
    if not isinstance(entry, dict):
        problems.add(MANIFEST, "", "entry", "must be an object")
        entry = {}
    files: dict[str, str] = {}
    for key, default in (("concepts", DEFAULT_CONCEPTS), ("inferences", DEFAULT_INFERENCES), ("inputs", None)):
        rel = entry.get(key, default)
        if rel is None:
            continue
        reason = unsafe_relative_path(rel) if isinstance(rel, str) else "must be a relative path"
        if reason:
            problems.add(MANIFEST, "entry", key, f"{reason}: {rel!r}")
            continue
        files[key] = rel
    provisions = manifest.get("provisions") or {}
    if isinstance(provisions, dict):
        for key, rel in provisions.items():
            if isinstance(rel, str):
                reason = unsafe_relative_path(rel)
                if reason:
                    problems.add(MANIFEST, "provisions", key, f"{reason}: {rel!r}")
                elif not (root / rel).exists():
                    problems.add(MANIFEST, "provisions", key, f"provision not found: {rel}")

    digest = hashlib.sha256()
    concepts = _parse_concepts(
        _read_json(root, files["concepts"], problems, digest) if "concepts" in files else None,
        files.get("concepts", DEFAULT_CONCEPTS),
        problems,
    )
    inferences = _parse_inferences(
        _read_json(root, files["inferences"], problems, digest) if "inferences" in files else None,
        files.get("inferences", DEFAULT_INFERENCES),
        problems,
    )
    inputs: dict[str, Any] = {}
    if "inputs" in files:
        raw_inputs = _read_json(root, files["inputs"], problems, digest)
        if isinstance(raw_inputs, dict):
            inputs = {k: v for k, v in raw_inputs.items() if not k.startswith("_")}
        elif raw_inputs is not None:
            problems.add(files["inputs"], "", "", "must be a JSON object")
    plan = Plan(root=root, manifest=manifest, concepts=concepts, inferences=inferences, inputs=inputs, fingerprint=digest.hexdigest())
    plan_files = files
    _check_plan(plan, plan_files, problems)
    return plan


# ------------------------------------------------------------------------ validation


def _sign_paths(value: Any) -> list[tuple[str, str]]:
    """(norm, path) for every path-like sign inside nested data."""
    found: list[tuple[str, str]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        else:
            sign = parse_sign(item)
            if sign and sign.norm in PATH_NORMS:
                found.append((sign.norm, sign.payload))
    return found


def _check_paths(
    plan: Plan, file: str, entry: str, field_name: str, data: Any, problems: _Collector, generated_scripts: bool = False
) -> None:
    """`generated_scripts`: the data feeds a sequence that writes a missing script, so it may not exist yet."""
    for norm, path in _sign_paths(data):
        reason = unsafe_relative_path(path)
        if reason:
            problems.add(file, entry, field_name, f"{reason}: {path!r}")
        elif norm in REQUIRED_FILE_NORMS and not (generated_scripts and norm == "script_location") and not (plan.root / path).is_file():
            problems.add(file, entry, field_name, f"provision file not found: {path}")


def _script_generating_inputs(plan: Plan) -> set[str]:
    """Concepts read by a sequence that generates its script when the file is missing."""
    names: set[str] = set()
    for inf in plan.inferences:
        if inf.sequence in SCRIPT_GENERATING_SEQUENCES:
            names.update(name for name in (*inf.value_concepts, *inf.context_concepts, inf.function_concept) if name)
    return names


def _check_plan(plan: Plan, files: dict[str, str], problems: _Collector) -> None:
    from normcode_core.engine.sequences import known_sequences

    cfile = files.get("concepts", DEFAULT_CONCEPTS)
    ifile = files.get("inferences", DEFAULT_INFERENCES)
    generating = _script_generating_inputs(plan)
    for concept in plan.concepts.values():
        _check_paths(
            plan, cfile, concept.name, "reference_data", concept.reference_data, problems, concept.name in generating
        )
        if concept.reference_data is not None and concept.reference_axis_names is not None:
            data = concept.reference_data if isinstance(concept.reference_data, list) else [concept.reference_data]
            from normcode_core.engine.reference import ragged_shape

            if len(concept.reference_axis_names) > len(ragged_shape(data)):
                problems.add(
                    cfile, concept.name, "reference_axis_names",
                    f"{len(concept.reference_axis_names)} axis names for data of rank {len(ragged_shape(data))}",
                )
    if "inputs" in files:
        for name, value in plan.inputs.items():
            if name not in plan.concepts:
                problems.add(files["inputs"], name, "", "unknown concept")
            _check_paths(plan, files["inputs"], name, "data", value, problems, name in generating)

    seen: dict[str, int] = {}
    sequences = known_sequences()
    for inf in plan.inferences:
        seen[inf.flow_index] = seen.get(inf.flow_index, 0) + 1
        if inf.sequence not in sequences:
            problems.add(ifile, inf.flow_index, "inference_sequence", f"unknown sequence type {inf.sequence!r}")
        refs = [("concept_to_infer", inf.concept_to_infer)]
        if inf.function_concept:
            refs.append(("function_concept", inf.function_concept))
        refs += [("value_concepts", n) for n in inf.value_concepts]
        refs += [("context_concepts", n) for n in inf.context_concepts]
        for field_name, name in refs:
            if not isinstance(name, str) or name not in plan.concepts:
                problems.add(ifile, inf.flow_index, field_name, f"unknown concept {name!r}")
        paradigm = inf.working_interpretation.get("paradigm")
        if isinstance(paradigm, str) and ("/" in paradigm or "\\" in paradigm or ".." in paradigm):
            problems.add(ifile, inf.flow_index, "working_interpretation.paradigm", f"paradigm must be a name: {paradigm!r}")
        _check_paths(
            plan, ifile, inf.flow_index, "working_interpretation", inf.working_interpretation, problems,
            inf.sequence in SCRIPT_GENERATING_SEQUENCES,
        )
    for flow_index, n in seen.items():
        if n > 1:
            problems.add(ifile, flow_index, "flow_info.flow_index", f"duplicate flow index ({n} entries)")
    if not plan.inferences and not problems.problems:
        problems.add(ifile, "", "", "the plan has no inferences")
    if not any(p.field == "flow_info.flow_index" and "duplicate" in p.message for p in problems.problems):
        for cycle in find_cycles(plan):
            problems.add(ifile, cycle[0], "", "dependency cycle: " + " -> ".join(cycle + [cycle[0]]))


def find_cycles(plan: Plan) -> list[list[str]]:
    """Cycles of hard dependencies (ones no `start_without_*` flag can bypass): a deadlock.

    An item depends on its flow-index descendants and on the items producing its function
    and value concepts (ground and input concepts need no producer).
    """
    producers: dict[str, list[str]] = {}
    for inf in plan.inferences:
        producers.setdefault(inf.concept_to_infer, []).append(inf.flow_index)
        if inf.sequence in ITERATING_SEQUENCES:
            for name in inf.context_concepts:
                producers.setdefault(name, []).append(inf.flow_index)
    index = {inf.flow_index: inf for inf in plan.inferences}
    children: dict[str, list[str]] = {}
    for inf in plan.inferences:
        parent = inf.flow_index.rpartition(".")[0]
        if parent in index:
            children.setdefault(parent, []).append(inf.flow_index)

    edges: dict[str, set[str]] = {fi: set() for fi in index}
    for inf in plan.inferences:
        out = edges[inf.flow_index]
        if not (inf.start_with_support_reference_only or inf.start_without_support_reference_only_once):
            out.update(children.get(inf.flow_index, ()))
        needed: list[str] = []
        if inf.function_concept and not (inf.start_without_function or inf.start_without_function_only_once):
            needed.append(inf.function_concept)
        if not (inf.start_without_value or inf.start_without_value_only_once):
            assign_source = (inf.working_interpretation.get("syntax") or {}).get("assign_source")
            if not (inf.sequence == "assigning" and isinstance(assign_source, list)):
                needed.extend(inf.value_concepts)
        for name in needed:
            concept = plan.concepts.get(name)
            if concept is None or concept.is_ground or name in plan.inputs:
                continue
            makers = [p for p in producers.get(name, ()) if p != inf.flow_index]
            if len(makers) == 1:  # with several producers any one may satisfy it: not a hard edge
                out.add(makers[0])

    # Tarjan's strongly connected components, iteratively (plans can be deep).
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(edges, key=flow_key):
        if start in order:
            continue
        work = [(start, iter(sorted(edges[start], key=flow_key)))]
        order[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in order:
                    order[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt], key=flow_key))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], order[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component, key=flow_key))
    return cycles


# ------------------------------------------------------------------------ entry points


def _extract_zip(path: Path, target: Path, problems: _Collector) -> Path | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for name in names:
                reason = unsafe_relative_path(name)
                if reason:
                    problems.add(path.name, name, "", f"{reason} in archive")
            if problems.problems:
                return None
            archive.extractall(target)
    except (zipfile.BadZipFile, OSError) as exc:
        problems.add(path.name, "", "", f"not a readable zip archive: {exc}")
        return None
    # A package zipped with its folder: use the single top-level directory holding the manifest.
    if not (target / MANIFEST).exists():
        entries = [p for p in target.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        if len(entries) == 1 and entries[0].is_dir():
            return entries[0]
    return target


def _load(path: str | Path) -> tuple[Plan | None, list[Problem]]:
    problems = _Collector()
    root = Path(path)
    extracted: Path | None = None
    if not root.exists():
        problems.add(str(path), "", "", "no such file or directory")
        return None, problems.problems
    if root.is_file():
        if not zipfile.is_zipfile(root):
            problems.add(root.name, "", "", "a plan must be a directory or a .zip package")
            return None, problems.problems
        temp = Path(tempfile.mkdtemp(prefix="normcode-plan-"))
        package_root = _extract_zip(root, temp, problems)
        if package_root is None:
            shutil.rmtree(temp, ignore_errors=True)
            return None, problems.problems
        root, extracted = package_root, temp
    plan = _read_plan(root, problems)
    if extracted is not None:
        # The extraction lives as long as the plan object.
        weakref.finalize(plan, shutil.rmtree, extracted, True)
    return plan, problems.problems


def validate_plan(path: str | Path) -> list[Problem]:
    """Every problem that would stop the plan from running (empty when it is valid)."""
    return _load(path)[1]


def load_plan(path: str | Path) -> Plan:
    """Load and validate; raises PlanInvalid listing every problem."""
    plan, problems = _load(path)
    if problems or plan is None:
        raise PlanInvalid(problems)
    return plan
