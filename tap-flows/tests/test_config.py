"""Settings: validation before any request, defaults, --about, the README's table."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from dev_services.fault_proxy import FaultProxy
from singer_sdk.exceptions import ConfigValidationError

from tap_flows.state_file import parse_state
from tap_flows.tap import TapFlows

from .tap_process import TAP, run_tap, state_for, write_json

README = Path(__file__).resolve().parents[1] / "README.md"
URL = "http://127.0.0.1:5055"
SETTINGS = (
    "api_url", "api_key", "start_time", "end_time", "lookback_seconds", "page_size",
    "request_timeout", "request_deadline_seconds", "max_retries", "user_agent",
)  # fmt: skip


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "'api_url' is a required property"),
        ({"api_url": "ftp://example.org"}, "api_url must be an http(s) URL"),
        ({"api_url": "127.0.0.1:5055"}, "api_url must be an http(s) URL"),
        ({"api_url": "http://:5055"}, "api_url must be an http(s) URL"),
        ({"api_url": "http://127.0.0.1:99999"}, "api_url must be an http(s) URL"),
        ({"api_url": "http://127.0.0.1:5055/?limit=5"}, "api_url must be an http(s) URL"),
        ({"api_url": URL, "page_size": -5}, "-5 is less than the minimum of 1"),
        ({"api_url": URL, "page_size": 0}, "0 is less than the minimum of 1"),
        ({"api_url": URL, "page_size": 1_000_001}, "is greater than the maximum of 1000000"),
        ({"api_url": URL, "page_size": "big"}, "'big' is not of type 'integer'"),
        ({"api_url": URL, "lookback_seconds": -1}, "less than the minimum of 0"),
        ({"api_url": URL, "max_retries": -1}, "less than the minimum of 0"),
        ({"api_url": URL, "request_timeout": 0}, "less than the minimum of 1"),
        ({"api_url": URL, "request_deadline_seconds": 0}, "less than the minimum of 1"),
        ({"api_url": URL, "start_time": -3}, "less than the minimum of 0"),
        (
            {"api_url": URL, "start_time": 100, "end_time": 100},
            "end_time (100) must be greater than start_time (100)",
        ),
        (
            {"api_url": URL, "start_time": 100, "end_time": 50},
            "end_time (50) must be greater than start_time (100)",
        ),
    ],
)
def test_invalid_settings_are_rejected_with_a_message_naming_them(
    config: dict, message: str
) -> None:
    with pytest.raises(ConfigValidationError) as raised:
        TapFlows(config=config, parse_env_config=False)
    assert any(message in error for error in raised.value.errors), raised.value.errors


def test_defaults_fill_in_and_valid_urls_pass() -> None:
    tap = TapFlows(config={"api_url": "https://flows.example.org/base/"}, parse_env_config=False)
    assert tap.config["page_size"] == 100_000
    assert tap.config["request_timeout"] == 60
    assert tap.config["request_deadline_seconds"] == 300
    assert tap.config["max_retries"] == 8
    assert tap.config["lookback_seconds"] == 0
    assert tap.config["user_agent"].startswith("tap-flows/")
    assert tap.streams["flows"].url_base == "https://flows.example.org/base"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"page_size": -5}, "-5 is less than the minimum of 1 in config['page_size']"),
        ({"start_time": 9, "end_time": 9}, "end_time (9) must be greater than start_time (9)"),
    ],
)
def test_the_cli_fails_in_one_line_before_any_request(
    tmp_path: Path, flows_api_url: str, config: dict, message: str
) -> None:
    with FaultProxy(flows_api_url) as proxy:
        run = run_tap(tmp_path, {"api_url": proxy.url, **config})
    assert run.returncode == 1
    assert proxy.requests == []
    assert run.messages == []
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert message in errors[0]
    assert errors[1].endswith("Config validation failed")
    assert len(errors) == 2
    assert "Traceback" not in run.stderr


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(TAP), "--config", str(tmp_path / "nope.json")], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert f"File at '{tmp_path / 'nope.json'}' was not found" in done.stderr
    assert "Traceback" not in done.stderr


def about() -> dict:
    done = subprocess.run(
        [str(TAP), "--about", "--format", "json"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_about_lists_the_capabilities_and_a_secret_api_key() -> None:
    info = about()
    assert info["capabilities"] == [
        "catalog", "discover", "state", "about", "stream-maps", "schema-flattening", "batch",
    ]  # fmt: skip
    settings = info["settings"]
    assert settings["required"] == ["api_url"]
    assert settings["properties"]["api_key"]["secret"] is True
    assert settings["properties"]["api_key"]["writeOnly"] is True
    for name in SETTINGS:
        assert settings["properties"][name]["description"], name
        assert settings["properties"][name]["title"], name


def test_the_readme_settings_table_matches_the_tap() -> None:
    properties = TapFlows.config_jsonschema["properties"]
    table = r"^\| `(\w+)` \| (\w+) \| (yes|no) \| ([^|]*) \| ([^|]*) \|$"
    rows = re.findall(table, README.read_text(), re.M)
    assert tuple(name for name, *_ in rows) == SETTINGS
    for name, kind, required, default, description in rows:
        assert description == properties[name]["description"], name
        assert kind in properties[name]["type"], name
        assert (required == "yes") == (name in TapFlows.config_jsonschema["required"]), name
        expected = properties[name].get("default")
        shown = default.strip().strip("`").replace(",", "")
        if name == "user_agent":
            assert shown == "tap-flows/<version>"
        else:
            assert shown == ("" if expected is None else str(expected)), name


GOOD_KEY = "k3y-With.Symbols~+/="
BAD_KEYS = [
    GOOD_KEY + "\n",
    GOOD_KEY + "\r\n",
    " " + GOOD_KEY,
    GOOD_KEY[:5] + "\t" + GOOD_KEY[5:],
    GOOD_KEY + "\x00",
    GOOD_KEY + "\x7f",
    GOOD_KEY + "\u00a0",
    GOOD_KEY + "é",
    "ключ-" + GOOD_KEY,
    GOOD_KEY + "\u2028",
    GOOD_KEY + "🔑",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=range(len(BAD_KEYS)))
def test_a_key_that_cannot_be_a_header_fails_at_start_without_showing_it(
    tmp_path: Path, key: str
) -> None:
    with FaultProxy("http://127.0.0.1:9") as proxy:
        run = run_tap(tmp_path, {"api_url": proxy.url, "api_key": key})
    output = run.stderr + json.dumps(run.messages)
    assert run.returncode == 1
    assert proxy.requests == []
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert "api_key has " in errors[0]
    assert "the key itself is not shown" in errors[0]
    for shown in (key, key.strip(), GOOD_KEY, GOOD_KEY[:6], repr(key)[1:-1]):
        assert shown not in output


def test_a_visible_ascii_key_is_accepted() -> None:
    assert TapFlows(config={"api_url": URL, "api_key": GOOD_KEY}, parse_env_config=False)


BAD_STATES = [
    "",
    "\n  \n",
    "{",
    "not json",
    "NaN",
    '{"bookmarks": {"flows": {"replication_key_value": NaN}}}',
    '{"bookmarks": {"flows": {"replication_key_value": Infinity}}}',
    '"bookmarks"',
    "[]",
    '[{"bookmarks": {}}]',
    "42",
    "null",
    '{"bookmarks": []}',
    '{"bookmarks": "flows"}',
    '{"bookmarks": {"flows": "123"}}',
    '{"bookmarks": {"flows": ["time", 123]}}',
    '{"bookmarks": {"flows": {"replication_key_value": "123"}}}',
    '{"bookmarks": {"flows": {"replication_key_value": 12.5}}}',
    '{"bookmarks": {"flows": {"replication_key_value": true}}}',
    '{"bookmarks": {"flows": {"replication_key_value": -1}}}',
    '{"bookmarks": {"flows": {"replication_key_value": {"t": 1}}}}',
    '{"bookmarks": {"other": 5}}',
    "\x00\x01binary",
]


@pytest.mark.parametrize("text", BAD_STATES, ids=range(len(BAD_STATES)))
def test_a_state_file_that_is_not_this_taps_state_is_a_usage_error(
    tmp_path: Path, text: str
) -> None:
    config = write_json(tmp_path / "config.json", {"api_url": "http://127.0.0.1:9"})
    state = tmp_path / "state.json"
    state.write_text(text)
    done = subprocess.run(
        [str(TAP), "--config", str(config), "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: Invalid value for '--state': state file '{state}': ")


def test_a_valid_state_file_still_sets_the_start(tmp_path: Path) -> None:
    state = write_json(tmp_path / "state.json", state_for(7))
    assert parse_state(state.read_text())["bookmarks"]["flows"]["replication_key_value"] == 7
