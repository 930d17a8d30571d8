"""Hostile stream and property names neither break the target nor inject SQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from google.cloud import bigquery

from tests.conftest import query, run_target


def test_hostile_names_become_plain_identifiers(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
    tables: Callable[[], list[str]],
) -> None:
    for victim in ("x", "victim"):
        bq_client.create_table(
            bigquery.Table(
                f"flows-local.{bq_dataset}.{victim}", [bigquery.SchemaField("a", "INT64")]
            )
        )
    result = run_target(target_config(), data_file("identifier_injection"))
    assert result.returncode == 0, result.stderr
    assert result.states == [{"evil": 2}] * 2
    table = "flows___DROP_TABLE_x____"
    assert tables() == sorted([table, "x", "victim"])  # nothing dropped
    columns = [
        field.name for field in bq_client.get_table(f"flows-local.{bq_dataset}.{table}").schema
    ]
    assert columns == [
        "id", "first_name", "a_b", "naive", "名前", "back_tick", "select", "_1st",
        "x___DROP_TABLE_victim____",
    ]  # fmt: skip
    got = query(bq_client, f"SELECT * FROM `flows-local.{bq_dataset}.{table}` ORDER BY id")
    assert got[0] == {
        "id": 1, "first_name": "Ada", "a_b": "dot", "naive": "café", "名前": "名",
        "back_tick": "`); DROP TABLE x; --", "select": "from", "_1st": 1,
        "x___DROP_TABLE_victim____": "'; DELETE FROM x WHERE '1'='1",
    }  # fmt: skip
    assert [row["back_tick"] for row in got] == ["`); DROP TABLE x; --", "\\`"]
