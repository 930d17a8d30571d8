"""Incremental runs from saved state, with rows appended between runs (`flows-api append`)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dev_services.flows_api import start_flows_api

from .conftest import BIN, db_rows, generate_db
from .tap_process import TapRun, run_tap

FIRST_ROWS = 8_000
APPENDED = 3_000


@pytest.fixture(scope="module")
def growing_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_db(tmp_path_factory.mktemp("growing") / "flows.db", FIRST_ROWS, seed=11)


@pytest.fixture(scope="module")
def growing_api_url(tmp_path_factory: pytest.TempPathFactory, growing_db: Path) -> Iterator[str]:
    service = start_flows_api(growing_db, tmp_path_factory.mktemp("growing-api") / "api.log")
    yield service.url
    service.stop()


def ids(run: TapRun) -> list[int]:
    return [r["id"] for r in run.records]


def test_later_runs_resume_from_the_bookmark_inclusive_with_lookback(
    tmp_path: Path, growing_api_url: str, growing_db: Path
) -> None:
    config = {"api_url": growing_api_url, "page_size": 2_500}
    first = run_tap(tmp_path / "first", config)
    assert first.returncode == 0, first.stderr
    assert first.records == db_rows(growing_db)
    bookmark = first.final_bookmark
    boundary = db_rows(growing_db, "time = ?", (bookmark,))
    assert boundary, "the last time value has rows"

    subprocess.run(
        [str(BIN / "flows-api"), "append", "--rows", str(APPENDED), "--db", str(growing_db)],
        check=True,
        capture_output=True,
    )
    new_rows = db_rows(growing_db, "id > ?", (FIRST_ROWS,))
    assert len(new_rows) == APPENDED
    assert min(r["time"] for r in new_rows) > bookmark

    second = run_tap(tmp_path / "second", config, state=first.states[-1])
    assert second.returncode == 0, second.stderr
    # Every new row, and of the old ones only those sharing the bookmark's time.
    assert second.records == boundary + new_rows
    assert second.final_bookmark == max(r["time"] for r in new_rows)

    lookback = 25
    with_lookback = run_tap(
        tmp_path / "lookback", {**config, "lookback_seconds": lookback}, state=first.states[-1]
    )
    assert with_lookback.returncode == 0, with_lookback.stderr
    window = db_rows(growing_db, "time >= ? AND id <= ?", (bookmark - lookback, FIRST_ROWS))
    assert len(window) > len(boundary)
    assert with_lookback.records == window + new_rows
    assert with_lookback.final_bookmark == second.final_bookmark

    floored = run_tap(
        tmp_path / "floored",
        {**config, "lookback_seconds": lookback, "start_time": bookmark - 5},
        state=first.states[-1],
    )
    assert floored.records == db_rows(growing_db, "time >= ?", (bookmark - 5,))

    nothing_new = run_tap(tmp_path / "third", config, state=second.states[-1])
    assert nothing_new.returncode == 0, nothing_new.stderr
    assert nothing_new.records == db_rows(growing_db, "time = ?", (second.final_bookmark,))
    assert nothing_new.final_bookmark == second.final_bookmark
