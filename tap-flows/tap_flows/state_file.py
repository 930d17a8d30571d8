"""The `--state` file checked before use: a usage error naming the file, not a traceback.

The bookmark decides where a run starts, so a state that is not what this tap wrote
(not JSON, empty, `NaN`, a list, a string bookmark) must stop the run before any
request rather than crash inside singer-sdk, or resume from a wrong place.
"""

from __future__ import annotations

import json
from typing import Any

STREAM = "flows"


class StateFileError(ValueError):
    """The state file cannot be this tap's state."""


def _refuse_constant(name: str) -> Any:
    """`json.loads` accepts NaN and Infinity; a bookmark must be a plain number."""
    msg = f"{name} is not JSON"
    raise StateFileError(msg)


def parse_state(text: str) -> dict[str, Any]:
    """The state in `text`, checked to be an object of per-stream bookmark objects.

    Args:
        text: The file's content.

    Returns:
        The state.

    Raises:
        StateFileError: Why the text is not a state of this tap, without a traceback.
    """
    if not text.strip():
        msg = 'the file is empty (a state is a JSON object such as {"bookmarks": {}})'
        raise StateFileError(msg)
    try:
        state = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        msg = f"not JSON ({exc})"
        raise StateFileError(msg) from None
    if not isinstance(state, dict):
        msg = f"a state is a JSON object, got {type(state).__name__}"
        raise StateFileError(msg)
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        msg = f"'bookmarks' must be an object, got {type(bookmarks).__name__}"
        raise StateFileError(msg)
    for stream, bookmark in bookmarks.items():
        if not isinstance(bookmark, dict):
            msg = f"bookmarks.{stream} must be an object, got {type(bookmark).__name__}"
            raise StateFileError(msg)
    value = bookmarks.get(STREAM, {}).get("replication_key_value")
    if value is not None and (type(value) is not int or value < 0):
        msg = (
            f"bookmarks.{STREAM}.replication_key_value must be a time (an integer >= 0), "
            f"got {json.dumps(value)[:40]}"
        )
        raise StateFileError(msg)
    return state
