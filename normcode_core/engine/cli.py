"""`normcode-server plan validate PATH` and `normcode-server plan run PATH ...` (also
`python -m normcode_core.engine.cli ...` without the server package's CLI).

`plan run` writes `{"final_concepts": [...], "llm_calls": N, "status", "cycles"}` to `--out`,
prints one progress line per step on stderr, and exits 0 when the run completed, 1 when it
failed, 3 when it waits for input that nobody can give (no terminal, no --input-answer),
2 for bad arguments or an invalid plan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 0, 1, 2, 3
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def add_plan_commands(subparsers: Any) -> None:
    plan = subparsers.add_parser("plan", help="validate or run a plan package without a server")
    commands = plan.add_subparsers(dest="plan_command", metavar="PLAN_COMMAND")
    plan.set_defaults(func=lambda _args: (plan.print_help(), EXIT_USAGE)[1])

    validate = commands.add_parser("validate", help="check a plan directory or .zip and list every problem")
    validate.add_argument("path", help="plan directory or .zip package")
    validate.add_argument("--json", action="store_true", help="print problems as JSON")
    validate.set_defaults(func=validate_command)

    run = commands.add_parser("run", help="run a plan directory or .zip package")
    run.add_argument("path", help="plan directory or .zip package")
    run.add_argument("--inputs", help="JSON file of inputs: {concept: {data, axes} | value}")
    run.add_argument("--agent", help="agent name from the settings (agents.yaml)")
    run.add_argument("--llm-base-url", help="OpenAI/Anthropic-compatible endpoint to use as an ad-hoc agent")
    run.add_argument("--model", help="model name for --llm-base-url")
    run.add_argument("--provider", choices=["openai", "anthropic"], default="openai", help="wire format of --llm-base-url")
    run.add_argument("--input-answer", help="answer every human-input question with this text")
    run.add_argument("--out", help="write the result JSON here (default: stdout)")
    run.add_argument("--run-dir", help="keep run.db here; an existing run.db is resumed (default: a temporary directory)")
    run.add_argument("--max-cycles", type=int, default=300, help="cycle limit (default 300, like upstream's runner)")
    run.add_argument("--max-parallel", type=int, default=16, help="steps running at once (default 16)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(func=run_command)


def validate_command(args: argparse.Namespace) -> int:
    from normcode_core.engine.plan import load_plan, validate_plan

    problems = validate_plan(args.path)
    if args.json:
        print(json.dumps({"valid": not problems, "problems": [p.to_json() for p in problems]}, indent=1))
        return EXIT_FAILED if problems else EXIT_OK
    if problems:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return EXIT_FAILED
    plan = load_plan(args.path)
    print(f"ok: {plan.name} {plan.version} ({len(plan.concepts)} concepts, {len(plan.inferences)} inferences)")
    return EXIT_OK


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"normcode-server plan: {message}", file=sys.stderr)
    return code


def _read_inputs(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"{path}: inputs must be a JSON object")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _agent(args: argparse.Namespace) -> Any:
    """The agent's `complete` function, or None when no agent was asked for."""
    if args.llm_base_url or args.agent:
        from normcode_core.agents.registry import AgentRegistry
        from normcode_core.agents.types import AgentConfig
        from normcode_core.plugins import load_plugins
        from normcode_core.settings import load_settings

        settings = load_settings(getattr(args, "data_dir", None))
        registry = AgentRegistry(settings, load_plugins(settings))
        if args.llm_base_url:
            if not args.model:
                raise ValueError("--llm-base-url needs --model")
            key_env = KEY_ENV[args.provider]
            # Local endpoints accept any key; a real key in the environment is used as is.
            os.environ.setdefault(key_env, "not-needed")
            config = AgentConfig(
                name="cli", provider=args.provider, model=args.model, base_url=args.llm_base_url,
                api_key_env=key_env, max_concurrency=max(1, args.max_parallel),
            )
            return registry.ad_hoc(config)
        return registry.get(args.agent)
    return None


def _progress(event: Any) -> None:
    data = event.data
    if event.type == "step_completed":
        print(f"[cycle {data.get('cycle')}] {data['flow_index']:<14} {data['sequence']:<26} {data['status']:<9} {data.get('concept', '')}", file=sys.stderr)
    elif event.type == "step_skipped":
        print(f"{'':10}{data['flow_index']:<14} {'skipped':<26} (condition of {data['by']})", file=sys.stderr)
    elif event.type == "step_failed":
        print(f"{'':10}{data['flow_index']:<14} {data['sequence']:<26} FAILED    {data['error']}", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    from normcode_core.engine.execution import Execution
    from normcode_core.engine.plan import PlanInvalid, load_plan

    try:
        plan = load_plan(args.path)
    except PlanInvalid as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _fail(f"invalid plan ({len(exc.problems)} problem(s))")
    try:
        inputs = _read_inputs(args.inputs)
        agent = _agent(args)
    except Exception as exc:  # noqa: BLE001 - one readable line for any setup problem
        return _fail(str(exc))

    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="normcode-run-"))
    plan_dir = os.path.abspath(args.path) if Path(args.path).is_dir() else str(plan.root)
    execution = Execution(
        plan,
        run_dir,
        llm=agent.complete if agent is not None else None,
        inputs=inputs,
        max_cycles=args.max_cycles,
        max_parallel=args.max_parallel,
        workspace=plan_dir,
        base_dir_for_paths=plan_dir,
        on_event=None if args.quiet else _progress,
        auto_answer=args.input_answer,
        script_log=None if args.run_dir else "-",  # a temporary run dir is deleted: print to stderr
    )
    try:
        outcome = await execution.run()
        while outcome.status == "waiting_input" and sys.stdin.isatty():
            for question in outcome.open_questions:
                prompt = (question.get("question") or {}).get("prompt") or "input"
                answer = await asyncio.get_running_loop().run_in_executor(None, input, f"{prompt}\n> ")
                execution.answer(question["id"], answer)
            outcome = await execution.run()
    finally:
        closer = getattr(getattr(agent, "inner", agent), "aclose", None)
        if closer is not None:
            await closer()
        if not args.run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    result = {
        "final_concepts": outcome.final_concepts,
        "llm_calls": outcome.llm_calls,
        "status": outcome.status,
        "cycles": outcome.cycles,
        "steps": outcome.steps,
    }
    if outcome.error:
        result["error"] = outcome.error
    text = json.dumps(result, ensure_ascii=False, indent=1, default=repr)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        print(text)
    if outcome.status == "completed":
        return EXIT_OK
    if outcome.status == "waiting_input":
        questions = "; ".join(f"{q['id']}: {(q.get('question') or {}).get('prompt', '')}" for q in outcome.open_questions)
        return _fail(f"waiting for input ({questions}); pass --input-answer or run in a terminal", EXIT_WAITING)
    return _fail(f"run {outcome.status}: {outcome.error}", EXIT_FAILED)


def run_command(args: argparse.Namespace) -> Any:
    return _run(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="normcode-server", description="NormCode plan tools")
    parser.add_argument("--data-dir", help="data directory for settings and agents (default: $NORMCODE_DATA_DIR)")
    add_plan_commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    result = func(args)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
