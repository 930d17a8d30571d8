"""`flows-api import` on a small gzip written by the test, through the real CLI."""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
from pathlib import Path

GOOD = [
    "1,0,C1065,389,C3799,N10451,6,10,5323",
    "1,0,C1423,N1136,C1707,N1,6,5,847",
    "2,3,C1423,N1142,C1707,N1,17,5,847",
    "5,0,C17693,N6,C5720,445,6,1,60",
]
BAD_FIELD_COUNT = [
    "1,0,C1,N1,C2",  # short
    "1,0,C1,N1,C2,N2,6,1,60,extra",  # long
    "",  # blank
]
NOT_INTEGER = ["x,0,C1,N1,C2,N2,6,1,60"]


def flows_api(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "flows-api"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def test_import_keeps_exactly_the_nine_field_lines_numbered_in_order(tmp_path: Path) -> None:
    lines = [
        GOOD[0],
        BAD_FIELD_COUNT[0],
        GOOD[1],
        BAD_FIELD_COUNT[2],
        GOOD[2],
        BAD_FIELD_COUNT[1],
        NOT_INTEGER[0],
        GOOD[3],
    ]
    source = tmp_path / "flows.txt.gz"
    with gzip.open(source, "wt") as out:
        out.write("\n".join(lines) + "\n")
    db = tmp_path / "flows.db"

    result = flows_api("import", str(source), "--db", str(db), "--no-progress")

    assert result.returncode == 0, result.stderr
    rows = sqlite3.connect(db).execute("SELECT * FROM flows ORDER BY id").fetchall()
    expected = []
    for n, line in enumerate(GOOD, start=1):
        f = line.split(",")
        expected.append(
            (n, int(f[0]), int(f[1]), f[2], f[3], f[4], f[5], int(f[6]), int(f[7]), int(f[8]))
        )
    assert rows == expected
    assert "imported 4 rows" in result.stderr
    assert "skipped 4 lines (3 without 9 fields, 1 with non-integer numbers)" in result.stderr


def test_import_refuses_a_database_that_already_has_rows(tmp_path: Path) -> None:
    source = tmp_path / "flows.txt"
    source.write_text(GOOD[0] + "\n")
    db = tmp_path / "flows.db"
    assert flows_api("import", str(source), "--db", str(db), "--no-progress").returncode == 0
    again = flows_api("import", str(source), "--db", str(db), "--no-progress")
    assert again.returncode == 1
    assert "already holds rows" in again.stderr


def test_import_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = flows_api("import", str(tmp_path / "nope.gz"), "--db", str(tmp_path / "x.db"))
    assert result.returncode == 1
    assert "input file not found" in result.stderr
    assert "Traceback" not in result.stderr
