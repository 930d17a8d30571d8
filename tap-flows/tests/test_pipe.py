"""`tap-flows | target-jsonl`: the tap feeding an unrelated Singer target through a real pipe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .conftest import db_rows
from .tap_process import TAP, write_json

TARGET_JSONL = Path(__file__).resolve().parents[2] / ".venv-jsonl" / "bin" / "target-jsonl"


def test_tap_into_target_jsonl_writes_exactly_the_source_rows(
    tmp_path: Path, flows_api_url: str, flows_db: Path
) -> None:
    assert TARGET_JSONL.exists(), f"{TARGET_JSONL} is missing: run 'make install'"
    out = tmp_path / "out"
    out.mkdir()
    tap_config = write_json(tmp_path / "tap.json", {"api_url": flows_api_url, "page_size": 4_000})
    target_config = write_json(tmp_path / "target.json", {"destination_path": str(out)})

    with open(tmp_path / "tap.log", "wb") as tap_log:
        tap = subprocess.Popen(
            [str(TAP), "--config", str(tap_config)], stdout=subprocess.PIPE, stderr=tap_log
        )
        target = subprocess.run(
            [str(TARGET_JSONL), "--config", str(target_config)],
            stdin=tap.stdout,
            capture_output=True,
            timeout=120,
        )
        assert tap.stdout is not None
        tap.stdout.close()
        assert tap.wait(timeout=60) == 0, (tmp_path / "tap.log").read_text()
    assert target.returncode == 0, target.stderr.decode()

    (written,) = out.glob("flows-*.jsonl")
    rows = [json.loads(line) for line in written.read_text().splitlines()]
    assert rows == db_rows(flows_db)
    states = [json.loads(line) for line in target.stdout.decode().splitlines()]
    final = states[-1]["bookmarks"]["flows"]["replication_key_value"]
    assert final == max(row["time"] for row in rows)
