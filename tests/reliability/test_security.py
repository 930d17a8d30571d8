"""Security: the API key guards the API, secrets never reach a log, SQL never holds a name raw.

Secrets are checked in everything a run prints (tap, target, run-pipe.sh and Meltano, which
relays both plugins' stderr), for successful and failing runs. The credentials file is a
real service-account key made here with `cryptography`; its `token_uri` is a closed port on
127.0.0.1, so the token request fails without anything leaving the machine.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dev_services.flows_check import source_figures
from dev_services.process import Service, free_port
from google.cloud import bigquery
from target_bigquery_lite.columns import SEQUENCE_COLUMN
from target_bigquery_lite.identifiers import column_name, quote, quote_table, table_name
from target_bigquery_lite.load_methods.merge import build_merge_sql
from target_bigquery_lite.load_methods.overwrite import build_replace_sql
from target_bigquery_lite.versions import build_delete_old_versions_sql

from tests.conftest import ROOT, generate_db, meltano
from tests.reliability.pipeline import Lane, Sizes, wait_for_exit

STREAM = "/api/v1/stream/flows.json"
TARGET = Path(sys.executable).parent / "target-bigquery-lite"


def test_the_api_refuses_every_request_without_its_key(
    tmp_path: Path, start_flows_api_service: Callable[..., Service]
) -> None:
    key = secrets.token_hex(16)
    db = generate_db(tmp_path / "flows.db", 500, seed=61)
    api = start_flows_api_service(db, api_key=key)
    refused = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {key[:-1]}"},
        {"Authorization": f"Bearer {key}x"},
        {"Authorization": f"bearer {key}"},
        {"Authorization": key},
        {"Authorization": f"Basic {key}"},
        {"X-Api-Key": key},
    ]
    for headers in refused:
        response = requests.get(f"{api.url}{STREAM}", headers=headers, timeout=10)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert key not in response.text
    in_query = requests.get(f"{api.url}{STREAM}", params={"api_key": key}, timeout=10)
    assert in_query.status_code == 401
    allowed = requests.get(f"{api.url}{STREAM}", headers={"Authorization": f"Bearer {key}"})
    assert allowed.status_code == 200
    assert len(allowed.text.splitlines()) == 500


HOSTILE_PARAMETERS = [
    {"since": "1; DROP TABLE flows"},
    {"since": "1", "after_id": "1 OR 1=1"},
    {"since": "1' OR '1'='1"},
    {"until": "0x10"},
    {"limit": "-1"},
    {"limit": "99999999999999999999"},
    {"since": ["1", "2"]},
    {"id": "1"},
]


def test_hostile_parameters_are_refused_and_change_nothing(
    tmp_path: Path, start_flows_api_service: Callable[..., Service]
) -> None:
    db = generate_db(tmp_path / "flows.db", 300, seed=62)
    before = source_figures(db)
    api = start_flows_api_service(db)
    for params in HOSTILE_PARAMETERS:
        response = requests.get(f"{api.url}{STREAM}", params=params, timeout=10)
        assert response.status_code == 400, params
        assert "error" in response.json()
    assert source_figures(db) == before


def service_account_key(path: Path, token_port: int) -> dict[str, str]:
    """Write a service-account key file with a real RSA key; return its fields."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "flows-local",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": "loader@flows-local.iam.gserviceaccount.com",
        "client_id": "109876543210987654321",
        "token_uri": f"http://127.0.0.1:{token_port}/token",
    }
    path.write_text(json.dumps(info))
    return info


def secrets_in(text: str, api_key: str, key_file: Path, info: dict[str, str]) -> list[str]:
    """Which secrets appear in `text`: the key, the key id, any piece of the private key."""
    found = []
    if api_key in text:
        found.append("api_key")
    if info["private_key_id"] in text:
        found.append("private_key_id")
    body = [line for line in info["private_key"].splitlines() if "PRIVATE KEY" not in line]
    if "PRIVATE KEY" in text or any(line[8:40] in text for line in body):
        found.append("private_key")
    if key_file.read_text()[:60] in text:
        found.append("file contents")
    return found


def test_no_key_or_credential_content_in_any_log_of_a_run(
    tmp_path: Path,
    start_flows_api_service: Callable[..., Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
    bq_dataset: str,
    state_suffix: str,
) -> None:
    api_key = secrets.token_urlsafe(24)
    db = generate_db(tmp_path / "flows.db", 2_000, seed=63)
    api = start_flows_api_service(db, api_key=api_key)
    key_file = tmp_path / "service-account.json"
    info = service_account_key(key_file, free_port())
    logs: dict[str, str] = {}

    # Pipe mode, a good key: a run that succeeds.
    lane = Lane("pipe", tmp_path / "pipe", bq_dataset, Sizes())
    lane.tap_settings = {"api_key": api_key}
    assert wait_for_exit(lane.start(api.url, bigquery_emulator.url)) == 0
    logs["pipe, key accepted"] = lane.log_of_last_run().read_text()
    # Pipe mode, a wrong key: the tap fails at once, naming the setting.
    wrong = secrets.token_urlsafe(24)
    lane.tap_settings = {"api_key": wrong}
    assert wait_for_exit(lane.start(api.url, bigquery_emulator.url)) == 1
    logs["pipe, key refused"] = refused = lane.log_of_last_run().read_text()
    assert "HTTP 401" in refused
    assert "check the api_key setting" in refused
    assert wrong not in refused

    # The target with the service-account key: no token can be had, so it fails clearly.
    config = tmp_path / "target.json"
    config.write_text(
        json.dumps(
            {
                "project": "flows-local",
                "dataset": bq_dataset,
                "api_endpoint": bigquery_emulator.url,
                "credentials_path": str(key_file),
                "max_retries": 1,
            }
        )
    )
    schema = {"type": "SCHEMA", "stream": "s", "schema": {"properties": {"id": {}}}}
    target = subprocess.run(
        [str(TARGET), "--config", str(config)],
        input=json.dumps(schema).encode() + b"\n",
        capture_output=True,
        timeout=120,
    )
    logs["target, credentials_path"] = stderr = target.stderr.decode()
    assert target.returncode == 1
    assert re.search(
        r"(get|create) dataset \S+ failed after 2 tries: could not get an access token for the "
        r"configured credentials \(TransportError: .*127\.0\.0\.1",
        stderr,
    ), stderr
    assert "Traceback" not in stderr

    # A key file whose key is damaged: refused when loaded, without its contents.
    damaged = tmp_path / "damaged-key.json"
    damaged.write_text(json.dumps({**info, "private_key": info["private_key"][:400]}))
    config.write_text(config.read_text().replace(str(key_file), str(damaged)))
    target = subprocess.run(
        [str(TARGET), "--config", str(config)],
        input=json.dumps(schema).encode() + b"\n",
        capture_output=True,
        timeout=120,
    )
    logs["target, damaged key file"] = stderr = target.stderr.decode()
    assert target.returncode == 2
    assert f"cannot load credentials from {damaged}: " in stderr
    assert "Failed to load service account credentials" in stderr
    assert info["private_key"][30:60] not in stderr

    # Meltano, with both secrets from the environment, at debug level.
    env = {
        "TAP_FLOWS_API_URL": api.url,
        "TAP_FLOWS_API_KEY": api_key,
        "TARGET_BIGQUERY_LITE_API_ENDPOINT": bigquery_emulator.url,
        "TARGET_BIGQUERY_LITE_DATASET": bq_dataset,
        "TARGET_BIGQUERY_LITE_CREDENTIALS_PATH": str(key_file),
        "TARGET_BIGQUERY_LITE_MAX_RETRIES": "1",
        "TARGET_BIGQUERY_LITE_STAGING_DIR": str(tmp_path / "staging"),
    }
    args = ["--log-level=debug", "run", "--state-id-suffix", state_suffix]
    run = meltano(*args, "tap-flows", "target-bigquery-lite", env=env)
    logs["meltano run, debug"] = run.stdout + run.stderr
    assert run.returncode != 0
    assert "failed after 2 tries" in run.stderr
    assert not list((ROOT / ".state").glob(f"*:{state_suffix}/state.json"))

    leaks = {name: secrets_in(text, api_key, key_file, info) for name, text in logs.items()}
    assert leaks == {name: [] for name in logs}


HOSTILE = [
    "flows`; DROP TABLE flows; --",
    "a`b",
    "`",
    "``",
    "\\`",
    "x` OR `1`=`1",
    "name' OR '1'='1",
    'quote"d',
    "semi;colon",
    "-- comment",
    "/* block */",
    "new\nline",
    "tab\there",
    "nul\x00byte",
    "fullwidth\uff40backtick",
    "rtl\u202eoverride",
    "zero\u200bwidth",
    "naïve café",
    "名前",
    "",
    " ",
    "1st",
    "_PARTITIONTIME",
    "_TABLE_SUFFIX",
    "SELECT",
    "x" * 400,
    "\ud800",
]


def word(name: str) -> bool:
    """Letters, digits and marks of any script, and `_`: what names keep (the README's rule).

    No quote, backtick, space, dot, dash, control or other punctuation character can pass.
    """
    return bool(name) and all(
        char == "_" or unicodedata.category(char)[0] in "LNM" for char in name
    )


def plain(name: str) -> bool:
    """A `word` that does not start with a digit: what may stand as a column in SQL."""
    return word(name) and not name[0].isdigit()


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_names_become_plain_identifiers_or_are_refused(name: str) -> None:
    for maker in (column_name, table_name):
        try:
            safe = maker(name)
        except ValueError:  # IdentifierError: too long
            assert len(name) > 300
            continue
        assert word(safe), safe
        assert plain(safe) or maker is table_name  # tables may start with a digit
        assert quote_table("flows-local", "flows", safe) == f"`flows-local`.`flows`.`{safe}`"
    if not plain(name):  # raw, it never reaches SQL
        with pytest.raises(ValueError, match="refusing to put"):
            quote(name)
        with pytest.raises(ValueError, match="refusing to put"):
            build_merge_sql("`p`.`d`.`t`", "`p`.`d`.`s`", ["id"], ["id", name])
    if not word(name):
        with pytest.raises(ValueError, match="refusing to put"):
            quote_table("flows-local", "flows", name)


def skeleton(sql: str) -> str:
    """The SQL with each quoted identifier replaced by a placeholder, after checking it."""
    for quoted in re.findall(r"`([^`]*)`", sql):
        assert plain(quoted) or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.:_-]*", quoted), quoted
    return re.sub(r"`[^`]*`", "`?`", sql)


def test_sql_from_hostile_names_has_the_shape_of_sql_from_plain_ones() -> None:
    def statements(names: list[str]) -> list[str]:
        columns = [column_name(name) for name in names if len(name) <= 300]
        target = quote_table("flows-local", "flows", table_name(names[0]))
        source = quote_table("flows-local", "flows", f"_bqlite_stage_1_{table_name(names[0])}")
        keys = columns[:2]
        return [
            build_merge_sql(target, source, keys, [*columns, "_sdc_table_version"]),
            build_delete_old_versions_sql(target),
            build_replace_sql(target, source, columns),
        ]

    hostile = statements(HOSTILE)
    plain = statements([f"c{i}" for i in range(len([n for n in HOSTILE if len(n) <= 300]))])
    assert [skeleton(sql) for sql in hostile] == [skeleton(sql) for sql in plain]
    assert f"`{SEQUENCE_COLUMN}`" in hostile[0]
