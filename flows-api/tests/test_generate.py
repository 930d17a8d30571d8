"""`flows-api generate` and `append` through the real CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flows_api.generate import generate_rows

from .test_import import flows_api


def test_generate_is_deterministic_and_lanl_shaped(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for db in (a, b):
        result = flows_api("generate", "--rows", "20000", "--db", str(db), "--seed", "3")
        assert result.returncode == 0, result.stderr
    dump_a = sqlite3.connect(a).execute("SELECT * FROM flows ORDER BY id").fetchall()
    assert dump_a == sqlite3.connect(b).execute("SELECT * FROM flows ORDER BY id").fetchall()
    assert [r[0] for r in dump_a] == list(range(1, 20_001))
    times = [r[1] for r in dump_a]
    assert times == sorted(times)
    assert len(set(times)) < len(times) / 5, "many rows share each second"
    assert {r[7] for r in dump_a} == {1, 6, 17}
    assert all(r[3].startswith("C") and r[5].startswith("C") for r in dump_a)
    assert any(r[4].startswith("N") for r in dump_a)
    assert any(r[4].isdigit() for r in dump_a)
    byte_counts = sorted(r[9] for r in dump_a)
    assert byte_counts[-1] > 50 * byte_counts[len(byte_counts) // 2], "heavy-tailed byte counts"


def test_other_seed_gives_other_rows() -> None:
    assert list(generate_rows(50, seed=1)) != list(generate_rows(50, seed=2))


def test_generate_refuses_an_existing_database(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    assert flows_api("generate", "--rows", "10", "--db", str(db)).returncode == 0
    again = flows_api("generate", "--rows", "10", "--db", str(db))
    assert again.returncode == 1
    assert "already holds rows" in again.stderr


def test_append_adds_later_rows_with_higher_ids(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    assert flows_api("generate", "--rows", "1000", "--db", str(db)).returncode == 0
    conn = sqlite3.connect(db)
    max_time, max_id = conn.execute("SELECT max(time), max(id) FROM flows").fetchone()
    result = flows_api("append", "--rows", "500", "--db", str(db))
    assert result.returncode == 0, result.stderr
    new = conn.execute("SELECT id, time FROM flows WHERE id > ? ORDER BY id", (max_id,)).fetchall()
    assert [r[0] for r in new] == list(range(max_id + 1, max_id + 501))
    assert min(r[1] for r in new) == max_time + 1


def test_append_to_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    result = flows_api("append", "--rows", "5", "--db", str(tmp_path / "none.db"))
    assert result.returncode == 1
    assert "database not found" in result.stderr


def test_rows_must_be_positive(tmp_path: Path) -> None:
    result = flows_api("generate", "--rows", "0", "--db", str(tmp_path / "z.db"))
    assert result.returncode == 2
    assert "--rows must be >= 1" in result.stderr
