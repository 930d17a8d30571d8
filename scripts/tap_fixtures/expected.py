"""Write an expected-values document: its header indented, then one line per source row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_expected(path: Path, contents: dict[str, Any]) -> None:
    """Write `contents` (with a `rows` list) as JSON that diffs well: a row per line."""
    header = json.dumps(
        {k: v for k, v in contents.items() if k != "rows"}, indent=1, ensure_ascii=False
    )
    rows = ",\n".join("  " + json.dumps(row, ensure_ascii=False) for row in contents["rows"])
    path.write_text(f'{header[:-2]},\n "rows": [\n{rows}\n ]\n}}\n')
