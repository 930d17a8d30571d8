"""ACTIVATE_VERSION: once a run ends cleanly, rows of older versions are gone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import run_target


def test_rows_of_older_versions_are_deleted_at_the_end(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    config = target_config()
    first = run_target(config, data_file("activate_version"))
    assert first.returncode == 0, first.stderr
    assert [(r["id"], r["_sdc_table_version"]) for r in rows("flows")] == [(1, 1), (2, 1), (3, 1)]
    second = run_target(config, data_file("activate_version_next"))
    assert second.returncode == 0, second.stderr
    assert [(r["id"], r["byte_count"], r["_sdc_table_version"]) for r in rows("flows")] == [
        (2, 2222, 2),
        (4, 40, 2),
    ]
    assert "version 2 is active; 2 rows of older versions deleted" in second.stderr
    # the state after ACTIVATE_VERSION waits for the clean-up: one state, at the end
    assert second.states == [{"full": 2}]


def test_a_failed_run_deletes_nothing(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    tmp_path: Path,
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    config = target_config()
    assert run_target(config, data_file("activate_version")).returncode == 0
    broken = data_file("activate_version_next").read_text() + '{"type": "RECORD", "str'
    (tmp_path / "broken.singer").write_text(broken)
    result = run_target(config, tmp_path / "broken.singer")
    assert result.returncode == 1
    assert "input ended in the middle of a message" in result.stderr
    assert [r["id"] for r in rows("flows")] == [1, 2, 3]
