"""`normcode-server`: serve | config | check | plan ...

Every subcommand sets `func(args) -> int | None` (the exit code; a coroutine function is run with
asyncio). Bad settings or plugins end with one readable line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from normcode_core import __version__

EXIT_BAD_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_CONFIG
    from normcode_core.plugins import PluginLoadError
    from normcode_core.settings import SettingsError

    try:
        result = args.func(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)
    except (SettingsError, PluginLoadError) as exc:
        print(f"normcode-server: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normcode-server", description="NormCode Server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--data-dir", help="data directory (default: $NORMCODE_DATA_DIR or ./data)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve_parser = subparsers.add_parser("serve", help="run the HTTP server")
    serve_parser.add_argument("--host", help="bind address (default: server.host)")
    serve_parser.add_argument("--port", type=int, help="port (default: server.port, $PORT)")
    serve_parser.add_argument("--reload", action="store_true", help="restart when source files change (development)")
    serve_parser.set_defaults(func=serve)

    config_parser = subparsers.add_parser("config", help="print the effective settings (secrets redacted) and their sources")
    config_parser.add_argument("--json", action="store_true", help="print JSON {settings, sources}")
    config_parser.set_defaults(func=show_config)

    check_parser = subparsers.add_parser("check", help="validate settings and plugins")
    check_parser.set_defaults(func=check)

    _add_plan_commands(subparsers)
    return parser


# -- serve ------------------------------------------------------------------------------------------
def serve(args: argparse.Namespace) -> int:
    from hypercorn.config import Config

    from normcode_core.settings import load_settings

    settings = load_settings(args.data_dir)
    config = Config()
    config.bind = [f"{args.host or settings.server.host}:{args.port or settings.server.port}"]
    config.accesslog = None  # our RequestLogMiddleware writes the access log
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = float(settings.get("execution.shutdown_grace_s", 10)) + 5
    workers = int(settings.get("server.workers", 1))

    if args.reload or workers > 1:
        # hypercorn's process runner imports the app itself, from the environment.
        from hypercorn.run import run

        if args.data_dir:
            import os

            os.environ["NORMCODE_DATA_DIR"] = args.data_dir
        config.application_path = "normcode_core.app:app"
        config.use_reloader = args.reload
        config.workers = 1 if args.reload else workers
        return run(config)

    from normcode_core.app import create_app

    app = create_app(settings)
    return asyncio.run(_serve(app, config))


async def _serve(app: Any, config: Any) -> int:
    from hypercorn.asyncio import serve as hypercorn_serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logging.getLogger("normcode.cli").info("listening on %s", ", ".join(config.bind))
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)
    return 0


# -- config / check -------------------------------------------------------------------------------
def show_config(args: argparse.Namespace) -> int:
    from normcode_core.settings import load_settings

    settings = load_settings(args.data_dir)
    redacted = settings.redacted()
    if args.json:
        print(json.dumps({"settings": redacted, "sources": settings.sources()}, indent=2))
        return 0
    for key, value in _flatten(redacted):
        try:
            source = settings.source_of(key)
        except KeyError:
            source = "default"
        print(f"{key} = {json.dumps(value)}    # {source}")
    return 0


def check(args: argparse.Namespace) -> int:
    from normcode_core.logging import configure_logging
    from normcode_core.plugins import load_plugins
    from normcode_core.settings import SettingsError, check_agent_providers, load_settings

    settings = load_settings(args.data_dir)
    configure_logging(settings, level="CRITICAL")  # the problems are printed below, once each
    plugins = load_plugins(settings)
    problems = [f"plugin {failure.name!r} ({failure.source}) failed to load: {failure.error}" for failure in plugins.failed]
    try:
        plugins.require()
        check_agent_providers(settings, plugins.provider_names())
    except SettingsError as exc:
        problems.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - PluginLoadError repeats a failure already listed
        if str(exc) not in " ".join(problems):
            problems.append(str(exc))
    for problem in problems:
        print(f"normcode-server: {problem}", file=sys.stderr)
    if problems:
        return EXIT_BAD_CONFIG
    print(f"ok: settings valid, {len(plugins.loaded)} plugins loaded ({', '.join(i.name for i in plugins.loaded)})")
    return 0


def _flatten(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        items: list[tuple[str, Any]] = []
        for key, value in node.items():
            items += _flatten(value, f"{prefix}{key}.")
        return items
    return [(prefix.rstrip("."), node)]


# -- plan --------------------------------------------------------------------------------------------
def _add_plan_commands(subparsers: Any) -> None:
    """`plan ...` comes from the engine (normcode_core.engine.cli); explain clearly if it is absent."""
    try:
        from normcode_core.engine.cli import add_plan_commands
    except ImportError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        plan_parser = subparsers.add_parser("plan", help="validate or run a plan (engine not installed)")
        plan_parser.add_argument("rest", nargs=argparse.REMAINDER)
        plan_parser.set_defaults(func=lambda _args: _plan_unavailable(reason))
        return
    add_plan_commands(subparsers)


def _plan_unavailable(reason: str) -> int:
    print(f"normcode-server: the plan commands are unavailable: the engine CLI could not be loaded ({reason})", file=sys.stderr)
    return EXIT_BAD_CONFIG


if __name__ == "__main__":
    sys.exit(main())
