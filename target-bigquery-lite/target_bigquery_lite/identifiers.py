"""BigQuery identifiers: turn stream and property names into safe names, and quote them for SQL.

Names come from the tap, so they are untrusted input. They are made into names of letters,
digits, marks and underscores: ASCII letters and digits stay, accents on Latin letters are
folded (`naïve` -> `naive`, as earlier versions did, so existing columns keep matching),
letters, digits and marks of every other script stay as they are (`заказы`, `名前`: BigQuery
allows them in table names and, as flexible column names, in columns), and anything else
becomes `_`. `quote`/`quote_table` refuse anything but such names before adding backticks, so
a stream named ``flows`; DROP TABLE x; --`` becomes the table `flows___DROP_TABLE_x____`,
and no name can ever close a backtick early. Values never go into SQL text at all: they are
query parameters.

Folding can still make two names one (`a b` and `a_b`). Within a SCHEMA that is refused;
across runs, tables remember the stream they were made for and columns the property whose
name was folded (see `tables` and `schema_mapping`), so a later stream or property that
folds onto them is refused instead of overwriting their rows.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_COLUMN_NAME = 300
MAX_TABLE_NAME = 1024
SHOWN_NAME = 80
SOURCE_MARK = "Singer property: "
"""How a column's description names the property it was made for, when the names differ."""
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

PROJECT_RE = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?(?:[a-z]|[a-z][a-z0-9-]{0,61}[a-z0-9])$")
"""A Google Cloud project id (lowercase letters, digits, hyphens), optionally `domain:`."""
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_ASCII_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_KEPT_CATEGORIES = ("L", "N", "M")


class IdentifierError(ValueError):
    """A name cannot be used as a BigQuery identifier."""


def _kept(char: str) -> bool:
    """Whether a character may stay in a name: a letter, digit or mark of any script, or `_`."""
    if char.isascii():
        return char.isalnum() or char == "_"
    return unicodedata.category(char)[0] in _KEPT_CATEGORIES


def _fold(name: str) -> str:
    """Fold Latin accents (é -> e), keep other scripts, replace anything else with `_`."""
    out = []
    for char in unicodedata.normalize("NFC", name):
        if char.isascii():
            out.append(char if _kept(char) else "_")
            continue
        base = "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
        )
        if base and base.isascii() and all(_kept(c) for c in base):
            out.append(base)
        else:
            out.append(char if _kept(char) else "_")
    return "".join(out)


def is_plain(name: str) -> bool:
    """Whether `name` is made only of the characters names keep (see `_fold`)."""
    return bool(name) and (bool(_ASCII_NAME.fullmatch(name)) or all(_kept(c) for c in name))


def shown(name: str) -> str:
    """`name` for a log line or message: whole if short, else its start, length and digest."""
    if len(name) <= SHOWN_NAME:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[:SHOWN_NAME]}... ({len(name)} characters, sha256 {digest})"


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
        raise IdentifierError(
            f"the table name for stream {shown(stream)!r} would be longer than BigQuery's "
            f"{MAX_TABLE_NAME} bytes (with the table_prefix)"
        )
    return result


def quote(name: str) -> str:
    """Backtick-quote a column name after checking it is a plain name (see `is_plain`).

    Raises:
        IdentifierError: for a name with any other character, or starting with a digit.
    """
    if not is_plain(name) or name[0].isdigit():
        raise IdentifierError(f"refusing to put {shown(name)!r} into SQL: not a plain name")
    return f"`{name}`"


def quote_table(project: str, dataset: str, table: str) -> str:
    """Backtick-quote `project`.`dataset`.`table` after checking each part.

    Raises:
        IdentifierError: when any part holds a character outside its allowed set.
    """
    if not PROJECT_RE.fullmatch(project):
        raise IdentifierError(f"refusing to put project {project!r} into SQL")
    if not _DATASET_RE.fullmatch(dataset):
        raise IdentifierError(f"refusing to put dataset {dataset!r} into SQL")
    if not is_plain(table):
        raise IdentifierError(f"refusing to put table {shown(table)!r} into SQL")
    return f"`{project}`.`{dataset}`.`{table}`"
