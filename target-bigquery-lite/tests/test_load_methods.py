"""Merge (latest record per key wins, within and across batches), append and overwrite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import run_target

Rows = Callable[..., list[dict[str, Any]]]


def test_duplicate_keys_in_one_batch_keep_the_latest(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    result = run_target(target_config(), data_file("upsert_same_key_twice"))
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["byte_count"]) for r in rows("flows")] == [(1, 1000), (2, 200), (3, 3)]
    assert result.states == [{"bookmarks": {"flows": {"id": 3}}}] * 2


def test_duplicate_keys_across_batches_keep_the_latest(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    tables: Callable[[], list[str]],
) -> None:
    result = run_target(target_config(batch_max_rows=2), data_file("upsert_across_batches"))
    assert result.returncode == 0, result.stderr
    assert "flush 3 (batch_max_rows): 2 rows" in result.stderr  # 7 records in batches of 2
    assert "flush 4 (end of input): 1 rows" in result.stderr
    assert [(r["id"], r["byte_count"]) for r in rows("flows")] == [
        (1, 111), (2, 22), (3, 3), (4, 4),
    ]  # fmt: skip
    assert result.states == [
        {"bookmarks": {"flows": {"id": 3}}},
        {"bookmarks": {"flows": {"id": 4}}},
        {"bookmarks": {"flows": {"id": 4}}},
    ]
    assert tables() == ["flows"]  # every staging table was dropped


def test_rerun_of_the_same_input_changes_nothing(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config()
    assert run_target(config, data_file("upsert_same_key_twice")).returncode == 0
    first = rows("flows")
    assert run_target(config, data_file("upsert_same_key_twice")).returncode == 0
    assert rows("flows") == first


def test_stream_without_keys_appends_every_record(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config()
    for _ in range(2):
        result = run_target(config, data_file("append_events"))
        assert result.returncode == 0, result.stderr
    assert sorted((r["name"], r["n"]) for r in rows("events", order_by="n")) == [
        ("a", 1), ("a", 1), ("a", 1), ("a", 1), ("b", 2), ("b", 2),
    ]  # fmt: skip


def test_append_method_keeps_duplicate_keys(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    result = run_target(target_config(load_method="append"), data_file("upsert_same_key_twice"))
    assert result.returncode == 0, result.stderr
    assert sorted((r["id"], r["byte_count"]) for r in rows("flows")) == [
        (1, 1), (1, 100), (1, 1000), (2, 2), (2, 200), (3, 3),
    ]  # fmt: skip


def test_overwrite_replaces_the_table_with_the_latest_run(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    tables: Callable[[], list[str]],
) -> None:
    config = target_config(load_method="overwrite", batch_max_rows=2)
    first = run_target(config, data_file("overwrite_snapshot_1"))
    assert first.returncode == 0, first.stderr
    assert [r["id"] for r in rows("flows")] == [1, 2, 3]
    # the batch of ids 1-2 committed to the run's staging table, not the final one: no state
    # may go out before the end of the run
    assert first.states == [{"snapshot": 1}]
    second = run_target(config, data_file("overwrite_snapshot_2"))
    assert second.returncode == 0, second.stderr
    assert [(r["id"], r["byte_count"]) for r in rows("flows")] == [(2, 222), (5, 50)]
    assert second.states == [{"snapshot": 2}]
    assert tables() == ["flows"]
