"""Settings layering, ${VAR:-default}, provenance, validation and redaction (load_settings directly)."""

from __future__ import annotations

from pathlib import Path

import pytest

from normcode_core.settings import DEFAULTS_DIR, SettingsError, check_agent_providers, load_settings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_packaged_defaults_match_the_docker_strategy(data_dir: Path) -> None:
    settings = load_settings(data_dir, environ={})
    assert settings.server.port == 8000
    assert settings.server.workers == 1
    assert settings.execution.max_concurrent_runs == 10
    assert settings.execution.default_max_cycles == 100
    assert settings.execution.checkpoint_frequency == 5
    assert settings.logging.level == "INFO"
    assert settings.env == "production"
    assert set(settings.agents) == {"qwen-plus", "qwen-turbo", "gpt-4o", "gpt-4o-mini", "claude-sonnet", "demo"}
    assert settings.agents["gpt-4o"].api_key_env == "OPENAI_API_KEY"
    assert settings.agents["demo"].provider == "mock"
    assert settings.default_agent == "qwen-plus"
    assert settings.storage.url == f"sqlite:///{data_dir}/server.db"
    assert settings.storage.plans_dir == str(data_dir / "plans")
    assert settings.data_dir == data_dir
    assert settings.source_of("execution.max_concurrent_runs") == str(DEFAULTS_DIR / "default-server.yaml")


def test_layers_apply_in_order_last_wins(data_dir: Path) -> None:
    server_yaml = write(
        data_dir / "config" / "server.yaml",
        "execution:\n  max_concurrent_runs: 3\n  default_max_cycles: 7\nserver:\n  port: 9001\n",
    )
    agents_yaml = write(
        data_dir / "config" / "agents.yaml",
        "agents:\n  local:\n    provider: openai\n    model: llama\n    base_url: http://127.0.0.1:1/v1\n"
        "default_agent: local\n",
    )
    settings = load_settings(data_dir, environ={"NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS": "4"})

    assert settings.execution.max_concurrent_runs == 4  # env beats the data-dir file
    assert settings.source_of("execution.max_concurrent_runs") == "env NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS"
    assert settings.execution.default_max_cycles == 7  # the data-dir file beats the packaged default
    assert settings.source_of("execution.default_max_cycles") == str(server_yaml)
    assert settings.execution.checkpoint_frequency == 5  # untouched keys keep the packaged value
    assert settings.server.port == 9001
    assert "demo" in settings.agents and settings.agents["local"].model == "llama"  # agents merge
    assert settings.default_agent == "local"
    assert settings.source_of("agents.local") == str(agents_yaml)


def test_docker_strategy_variables(data_dir: Path) -> None:
    settings = load_settings(
        environ={"NORMCODE_DATA_DIR": str(data_dir), "NORMCODE_ENV": "development", "LOG_LEVEL": "debug", "PORT": "8123"}
    )
    assert settings.data_dir == data_dir
    assert settings.source_of("data_dir") == "env NORMCODE_DATA_DIR"
    assert settings.env == "development" and settings.is_development
    assert settings.logging.level == "DEBUG"
    assert settings.logging.format == "console"  # development defaults to readable logs
    assert settings.server.port == 8123
    assert settings.source_of("server.port") == "env PORT"
    # An explicit NORMCODE_ variable beats the plain one.
    explicit = load_settings(data_dir, environ={"PORT": "8123", "NORMCODE_SERVER__PORT": "8124"})
    assert explicit.server.port == 8124


def test_variable_expansion_with_defaults(data_dir: Path) -> None:
    write(
        data_dir / "config" / "server.yaml",
        "execution:\n  max_concurrent_runs: ${NC_TEST_RUNS:-6}\n"
        "server:\n  host: \"${NC_TEST_HOST:-127.0.0.2}\"\n  api_token: \"pre-${NC_TEST_TOKEN}-post\"\n",
    )
    unset = load_settings(data_dir, environ={})
    assert unset.execution.max_concurrent_runs == 6  # default used, typed as an integer
    assert unset.server.host == "127.0.0.2"
    assert unset.server.api_token == "pre--post"

    given = load_settings(data_dir, environ={"NC_TEST_RUNS": "2", "NC_TEST_HOST": "10.0.0.1", "NC_TEST_TOKEN": "x"})
    assert given.execution.max_concurrent_runs == 2
    assert given.server.host == "10.0.0.1"
    assert given.server.api_token == "pre-x-post"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("execution:\n  max_concurrent_runs: many\n", "execution.max_concurrent_runs: expected an integer, got 'many'"),
        ("execution:\n  resume_on_start: perhaps\n", "execution.resume_on_start: expected true or false"),
        ("server:\n  port: -1\n", "server.port: must be positive"),
        ("execution:\n  spare_script_workers: -1\n", "execution.spare_script_workers: must be 0 or more"),
        ("execution: [1, 2]\n", "execution: expected a mapping"),
        ("logging:\n  format: xml\n", "logging.format: must be one of auto, json, console"),
        ("storage:\n  url: mysql://x\n", "storage.url: must start with sqlite:/// or postgresql+psycopg://"),
        ("server:\n  port: 80\n bad indent: [\n", "malformed YAML: line"),
        ("- a list\n", "expected a mapping at the top level"),
    ],
)
def test_bad_server_file_names_file_key_and_problem(data_dir: Path, text: str, expected: str) -> None:
    path = write(data_dir / "config" / "server.yaml", text)
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir, environ={})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"invalid settings: {path}: ")
    assert expected in message


def test_bad_agent_settings(data_dir: Path) -> None:
    path = write(data_dir / "config" / "agents.yaml", "agents:\n  broken:\n    provider: openai\n    timeout: soon\n")
    with pytest.raises(SettingsError, match=r"agents\.broken\.timeout: expected a number, got 'soon'") as caught:
        load_settings(data_dir, environ={})
    assert str(path) in str(caught.value)

    write(data_dir / "config" / "agents.yaml", "agents:\n  nameless:\n    model: x\n")
    with pytest.raises(SettingsError, match=r"agents\.nameless\.provider: missing"):
        load_settings(data_dir, environ={})

    write(data_dir / "config" / "agents.yaml", "default_agent: ghost\n")
    with pytest.raises(SettingsError, match="default_agent: names no configured agent: 'ghost'"):
        load_settings(data_dir, environ={})


def test_unknown_provider_is_rejected_unless_a_plugin_serves_it(data_dir: Path) -> None:
    path = write(data_dir / "config" / "agents.yaml", "agents:\n  typo:\n    provider: opnai\n")
    settings = load_settings(data_dir, environ={})
    with pytest.raises(SettingsError) as caught:
        check_agent_providers(settings, set())
    assert str(caught.value).startswith(f"invalid settings: {path}: agents.typo.provider: unknown provider 'opnai'")
    check_agent_providers(settings, {"opnai"})  # a plugin serving that name makes it valid


def test_env_value_with_wrong_type_names_the_variable(data_dir: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir, environ={"NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS": "lots"})
    assert str(caught.value) == (
        "invalid settings: env NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS: execution.max_concurrent_runs: "
        "expected an integer, got 'lots'"
    )


def test_env_lists_and_booleans(data_dir: Path) -> None:
    settings = load_settings(
        data_dir, environ={"NORMCODE_PLUGINS__DISABLED": "provider_openai, health_core", "NORMCODE_EXECUTION__RESUME_ON_START": "false"}
    )
    assert settings.plugins.disabled == ["provider_openai", "health_core"]
    assert settings.execution.resume_on_start is False


def test_redacted_hides_secrets_but_not_variable_names(data_dir: Path) -> None:
    write(
        data_dir / "config" / "server.yaml",
        "server:\n  api_token: tok-abcdefgh\nstorage:\n  url: postgresql+psycopg://user:hunter2pw@db:5432/x\n",
    )
    write(data_dir / "config" / "agents.yaml", "agents:\n  inline:\n    provider: openai\n    api_key: sk-inline-0123456789abc\n")
    settings = load_settings(data_dir, environ={"OPENAI_API_KEY": "sk-live-0123456789abcdef"})
    redacted = settings.redacted()
    text = repr(redacted)
    assert redacted["server"]["api_token"] == "***"
    assert "hunter2pw" not in text and "tok-abcdefgh" not in text and "sk-inline-0123456789abc" not in text
    assert redacted["agents"]["gpt-4o"]["api_key_env"] == "OPENAI_API_KEY"
    assert settings.server.api_token == "tok-abcdefgh"  # the real value is still usable
    assert "sk-live-0123456789abcdef" in settings.secret_values()


def test_values_are_kept_verbatim_even_when_they_look_like_dynaconf_directives(data_dir: Path) -> None:
    settings = load_settings(
        data_dir, environ={"NORMCODE_SERVER__API_TOKEN": "@format {this.x}", "NORMCODE_SERVER__HOST": "@int 5"}
    )
    assert settings.server.api_token == "@format {this.x}"
    assert settings["server"]["host"] == "@int 5"
