"""BigQuery identifiers: turn stream and property names into safe names, and quote them for SQL.

Names come from the tap, so they are untrusted input. They are first made into plain
`[A-Za-z_][A-Za-z0-9_]*` identifiers (accents folded, everything else replaced by `_`), and
`quote`/`quote_table` refuse anything else before adding backticks. A stream named
``flows`; DROP TABLE x; --`` therefore becomes the table `flows___DROP_TABLE_x____`, and
no name can ever close a backtick early. Values never go into SQL text at all: they are
query parameters.
"""

from __future__ import annotations

import re
import unicodedata

MAX_COLUMN_NAME = 300
MAX_TABLE_NAME = 1024
# Column names BigQuery reserves (case-insensitive prefixes).
RESERVED_COLUMN_PREFIXES = (
    "_TABLE_",
    "_FILE_",
    "_PARTITION",
    "_ROW_TIMESTAMP",
    "__ROOT__",
    "_COLIDENTIFIER",
    "_CHANGE_SEQUENCE_NUMBER",
    "_CHANGE_TYPE",
    "_CHANGE_TIMESTAMP",
)

_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE_RE = re.compile(r"^[A-Za-z0-9_]+$")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_]")


class IdentifierError(ValueError):
    """A name cannot be used as a BigQuery identifier."""


def _fold(name: str) -> str:
    """Fold accents (é -> e) and replace every remaining invalid character with `_`."""
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _INVALID_CHARS.sub("_", ascii_only)


def column_name(name: str) -> str:
    """The BigQuery column name for a JSON property name.

    Raises:
        IdentifierError: if the result would exceed BigQuery's column name limit.
    """
    result = _fold(name) or "_"
    if result[0].isdigit() or result.upper().startswith(RESERVED_COLUMN_PREFIXES):
        result = f"_{result}"
    if len(result) > MAX_COLUMN_NAME:
        raise IdentifierError(f"property name is longer than {MAX_COLUMN_NAME} characters")
    return result


def table_name(stream: str, prefix: str = "") -> str:
    """The BigQuery table name for a stream (with the configured prefix).

    Raises:
        IdentifierError: if the result would exceed BigQuery's table name limit.
    """
    result = prefix + (_fold(stream) or "_")
    if len(result.encode()) > MAX_TABLE_NAME:
        raise IdentifierError(f"table name for stream {stream!r} is longer than {MAX_TABLE_NAME}")
    return result


def quote(name: str) -> str:
    """Backtick-quote a column name after checking it is a plain identifier.

    Raises:
        IdentifierError: for anything but `[A-Za-z_][A-Za-z0-9_]*`.
    """
    if not _COLUMN_RE.fullmatch(name):
        raise IdentifierError(f"refusing to put {name!r} into SQL: not a plain identifier")
    return f"`{name}`"


def quote_table(project: str, dataset: str, table: str) -> str:
    """Backtick-quote `project`.`dataset`.`table` after checking each part.

    Raises:
        IdentifierError: when any part holds a character outside its allowed set.
    """
    if not _PROJECT_RE.fullmatch(project):
        raise IdentifierError(f"refusing to put project {project!r} into SQL")
    if not _TABLE_RE.fullmatch(dataset):
        raise IdentifierError(f"refusing to put dataset {dataset!r} into SQL")
    if not _TABLE_RE.fullmatch(table):
        raise IdentifierError(f"refusing to put table {table!r} into SQL")
    return f"`{project}`.`{dataset}`.`{table}`"
