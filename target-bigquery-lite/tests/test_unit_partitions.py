"""Partition ranges, batch bounds, the MERGE's constant filter and the cost ledger (no network)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from target_bigquery_lite.config import parse_settings
from target_bigquery_lite.cost import CostLedger, table_label
from target_bigquery_lite.errors import ConfigError
from target_bigquery_lite.jobs import object_label, step_name
from target_bigquery_lite.load_methods.merge import build_merge_sql
from target_bigquery_lite.partitions import (
    Bounds,
    IntegerRange,
    parse_range,
    partition_span,
    target_filter_sql,
)

D = date
FLOWS = IntegerRange(0, 315_576_000, 43_200)


def test_the_flows_range_makes_7305_partitions_of_12_hours() -> None:
    assert FLOWS.partitions == 7_305
    assert partition_span(43_199, 43_200, "INT64", None, FLOWS) == (0, 86_399)
    assert IntegerRange(0, 10, 3).partitions == 4  # the last one is shorter


def test_ranges_at_and_past_the_10000_limit() -> None:
    assert parse_range({"start": 0, "end": 10_000, "interval": 1}).partitions == 10_000
    assert parse_range({"start": -5, "end": 99_995, "interval": 10}).partitions == 10_000
    with pytest.raises(ConfigError, match=r"makes 10001 partitions.*at least 11"):
        parse_range({"start": 0, "end": 100_001, "interval": 10})
    with pytest.raises(ConfigError, match="INT64 integers"):
        parse_range({"start": 0, "end": 2**63, "interval": 1})
    with pytest.raises(ConfigError, match="INT64 integers"):
        parse_range({"start": True, "end": 5, "interval": 1})


def test_settings_without_a_partition_field_warn() -> None:
    settings, warnings = parse_settings(
        {"project": "p", "dataset": "d", "merge_partition_filter": True}
    )
    assert settings.merge_partition_filter
    assert warnings == ["config: 'merge_partition_filter' has no effect without 'partition_field'"]
    with pytest.raises(ConfigError, match="partition_granularity"):
        parse_settings({"project": "p", "dataset": "d", "partition_granularity": "WEEK"})


def test_bounds_follow_the_rows_and_read_every_iso_spelling() -> None:
    bounds = Bounds("at", "TIMESTAMP")
    for value in ("2024-03-01T10:00:00Z", "2024-03-01T09:00:00-02:00", None, "2024-02-29T23:00"):
        bounds.see({"at": value})
    assert bounds.low == datetime(2024, 2, 29, 23, tzinfo=UTC)
    assert bounds.high == datetime(2024, 3, 1, 11, tzinfo=UTC)
    assert bounds.nulls
    assert bounds.known
    bounds.see({"at": 5})
    assert not bounds.known  # not a string: the MERGE asks the staging table instead
    ints = Bounds("time", "INT64")
    ints.see({"time": "12"})
    assert not ints.known


@pytest.mark.parametrize(
    ("kind", "granularity", "low", "high", "span"),
    [
        ("DATE", "MONTH", D(2024, 12, 5), D(2024, 12, 9), (D(2024, 12, 1), D(2024, 12, 31))),
        ("DATE", "YEAR", D(2024, 2, 5), D(2025, 1, 9), (D(2024, 1, 1), D(2025, 12, 31))),
        ("DATE", "DAY", D(9999, 12, 31), D(9999, 12, 31), (D(9999, 12, 31), D(9999, 12, 31))),
        ("DATETIME", "HOUR", datetime(2024, 1, 1, 5, 7), datetime(2024, 1, 1, 5, 8),
         (datetime(2024, 1, 1, 5), datetime(2024, 1, 1, 5, 59, 59, 999_999))),
    ],
)  # fmt: skip
def test_time_spans_cover_whole_partitions(
    kind: str, granularity: str, low: object, high: object, span: tuple[object, object]
) -> None:
    assert partition_span(low, high, kind, granularity, None) == span


def test_integer_spans_cover_whole_partitions_but_leave_outside_values_alone() -> None:
    assert partition_span(43_300, 90_000, "INT64", None, FLOWS) == (43_200, 129_599)
    assert partition_span(-10, 315_575_999, "INT64", None, FLOWS) == (-10, 315_575_999)
    assert partition_span(5, 400_000_000, "INT64", None, FLOWS) == (0, 400_000_000)


def test_the_filter_is_constants_only_and_admits_nulls_when_needed() -> None:
    bounds = Bounds("at", "TIMESTAMP")
    bounds.see({"at": "2024-03-01T10:00:00.5Z"})
    sql = target_filter_sql("T.`at`", "TIMESTAMP", bounds, "DAY", None)
    assert sql == (
        "T.`at` BETWEEN TIMESTAMP '2024-03-01 00:00:00+00:00' "
        "AND TIMESTAMP '2024-03-01 23:59:59.999999+00:00'"
    )
    only_nulls = Bounds("at", "DATE")
    only_nulls.see({})
    assert target_filter_sql("T.`at`", "DATE", only_nulls, "DAY", None) == "T.`at` IS NULL"


def test_the_merge_filters_its_target_side_in_the_on_clause() -> None:
    sql = build_merge_sql(
        "`p`.`d`.`t`", "`p`.`d`.`s`", ["id"], ["id", "time"], "_TABLE_target.`time` BETWEEN 0 AND 9"
    )
    assert (
        "ON _TABLE_target.`id` = _TABLE_batch.`id`\n  AND _TABLE_target.`time` BETWEEN 0 AND 9\n"
        in sql
    )


def test_the_cost_ledger_totals_per_table(caplog: pytest.LogCaptureFixture) -> None:
    ledger = CostLedger()
    merge = SimpleNamespace(
        job_id="j1",
        statement_type="MERGE",
        total_bytes_processed=2_000_000,
        total_bytes_billed=10_485_760,
        slot_millis=40,
        job_type="query",
    )
    load = SimpleNamespace(job_id="j2", job_type="load")
    with caplog.at_level(logging.INFO, logger="target_bigquery_lite"):
        ledger.record(step_name(1, "flows", "merge"), merge)
        ledger.record(step_name(1, "flows", "load"), load)
    assert "job j1: MERGE, 2.0 MB processed, 10.5 MB billed, 40 slot ms" in caplog.text
    assert "job j2: LOAD (no byte counts returned)" in caplog.text
    assert table_label(step_name(None, "a_b_c", "versions")) == object_label("a_b_c")
    assert ledger.summary(object_label("flows")) == (
        "2 job(s) (1 LOAD, 1 MERGE), 2.0 MB processed, 10.5 MB billed, 40 slot ms"
    )
    assert ledger.summary(object_label("other")) is None
    emulated = CostLedger(emulated=True)
    emulated.record(step_name(1, "flows", "merge"), merge)
    assert str(emulated.summary(object_label("flows"))).endswith(
        "(as the emulator reports them: it counts no bytes)"
    )


def test_an_insert_only_merge_has_no_update_clause() -> None:
    sql = build_merge_sql("`p`.`d`.`t`", "`p`.`d`.`s`", ["id"], ["id", "v"], update=False)
    assert "WHEN MATCHED" not in sql
    assert sql.endswith(
        "WHEN NOT MATCHED THEN INSERT (`id`, `v`)\n  VALUES (_TABLE_batch.`id`, _TABLE_batch.`v`)"
    )
