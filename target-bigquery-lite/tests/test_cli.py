"""The command line: --about, --version, config errors as one line, runs that need no BigQuery."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from target_bigquery_lite.about import settings_table
from target_bigquery_lite.config import SETTINGS
from tests.conftest import TARGET, run_target, target_env, write_config

README = Path(__file__).parents[1] / "README.md"
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TARGET, *args], capture_output=True, text=True, env=target_env(), timeout=60
    )


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "target-bigquery-lite 0.1.0"


def test_about_json_lists_every_setting() -> None:
    result = cli("--about", "--format", "json")
    assert result.returncode == 0
    about = json.loads(result.stdout)
    assert about["name"] == "target-bigquery-lite"
    assert list(about["settings"]["properties"]) == [setting.name for setting in SETTINGS]
    assert about["settings"]["required"] == ["project", "dataset"]
    assert about["settings"]["properties"]["batch_max_rows"]["default"] == 500_000
    assert "batch" in about["capabilities"]


def test_about_markdown_is_the_readme_settings_table() -> None:
    result = cli("--about", "--format", "markdown")
    assert result.returncode == 0
    assert settings_table() in result.stdout
    assert settings_table() in README.read_text()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dataset": "d"}, "config: 'project' is required"),
        (
            {"project": "p", "dataset": "my-dataset"},
            "'dataset' must be letters, digits and underscores",
        ),
        ({"project": "a.b", "dataset": "d"}, "'project' must be a Google Cloud project id"),
        ({"project": "My_Project", "dataset": "d"}, "'project' must be a Google Cloud project id"),
        (
            {"project": "p", "dataset": "d", "load_method": "upsert"},
            "'load_method' must be one of merge, append, overwrite",
        ),
        (
            {"project": "p", "dataset": "d", "batch_max_rows": 0},
            "'batch_max_rows' must be an integer >= 1 (got 0)",
        ),
        (
            {"project": "p", "dataset": "d", "batch_max_seconds": "5"},
            "'batch_max_seconds' must be a number > 0",
        ),
        (
            {"project": "p", "dataset": "d", "validate_records": "no"},
            "'validate_records' must be true or false",
        ),
        (
            {"project": "p", "dataset": "d", "cluster_fields": ["a", "b", "c", "d", "e"]},
            "'cluster_fields' must be a list of at most 4",
        ),
        (
            {"project": "p", "dataset": "d", "credentials_path": "/nonexistent.json"},
            "credentials_path /nonexistent.json is not a readable file",
        ),
        (
            {"project": "p", "dataset": "d", "api_endpoint": "localhost:9050"},
            "'api_endpoint' must start with http:// or https://",
        ),
        ({"project": "p`x", "dataset": "d"}, "'project' must be a Google Cloud project id"),
    ],
)
def test_bad_config_fails_with_one_line(settings: dict, message: str, tmp_path: Path) -> None:
    result = cli("--config", str(write_config(tmp_path / "c.json", **settings)))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    assert "--config is required" in cli().stderr
    missing = cli("--config", str(tmp_path / "nope.json"))
    assert (missing.returncode, "config file not found") == (
        2,
        missing.stderr.split(": ", 1)[1][:21],
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{project")
    result = cli("--config", str(broken))
    assert result.returncode == 2
    assert "is not valid JSON" in result.stderr


def test_state_without_records_needs_no_bigquery(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.json", project="p", dataset="d", api_endpoint=UNREACHABLE, extra_key=1
    )
    result = run_target(config, b'{"type": "STATE", "value": {"cursor": 7}}\n')
    assert result.returncode == 0, result.stderr
    assert result.states == [{"cursor": 7}, {"cursor": 7}]
    assert "config: ignoring unknown setting 'extra_key'" in result.stderr


def test_empty_input_is_a_clean_run(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", project="p", dataset="d", api_endpoint=UNREACHABLE)
    result = run_target(config, b"")
    assert (result.returncode, result.stdout) == (0, "")


def test_unreachable_bigquery_fails_after_retries(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.json", project="p", dataset="d", api_endpoint=UNREACHABLE, max_retries=1
    )
    schema = {
        "type": "SCHEMA",
        "stream": "s",
        "schema": {"properties": {"id": {"type": "integer"}}},
    }
    result = run_target(config, json.dumps(schema).encode() + b"\n")
    assert result.returncode == 1
    assert "get dataset p.d failed after 2 tries" in result.stderr
    assert "transient error" in result.stderr
    assert "Traceback" not in result.stderr


def test_input_file_option(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", project="p", dataset="d", api_endpoint=UNREACHABLE)
    source = tmp_path / "in.singer"
    source.write_text('{"type": "STATE", "value": {"from": "file"}}')  # no final newline
    result = run_target(config, source)
    assert result.states == [{"from": "file"}] * 2
