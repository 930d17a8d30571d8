"""Which key columns a load method can deduplicate on: one rule for `merge` and `dedup_view`.

Both group rows by their key (`PARTITION BY` in a window) and match or compare them, which
BigQuery refuses for RECORD, JSON and REPEATED columns; FLOAT64 it would accept, but two
floats that print alike need not be equal, so a float key would keep duplicates.
"""

from __future__ import annotations

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.errors import InputError
from target_bigquery_lite.identifiers import shown
from target_bigquery_lite.schema_evolution import canonical_type, source_of

UNSCALAR_KEY_TYPES = frozenset({"RECORD", "STRUCT", "JSON"})


def check_partition_keys(stream: str, keys: tuple[SchemaField, ...], needs: str) -> None:
    """Refuse a key column that cannot be partitioned by and compared exactly.

    `needs` completes the message: who needs such keys (e.g. "a MERGE needs keys BigQuery
    can match and partition by").

    Raises:
        InputError: for a key that maps to a RECORD, JSON, REPEATED or FLOAT64 column,
            naming the property (and its column when the names differ).
    """
    for key in keys:
        kind = canonical_type(key.field_type)
        if kind in UNSCALAR_KEY_TYPES or key.mode == "REPEATED" or kind == "FLOAT64":
            prop = source_of(key) or key.name
            column = "" if prop == key.name else f" (column {key.name})"
            hint = (
                "; declare it an integer, or a decimal (multipleOf, x-singer.decimal)"
                if kind == "FLOAT64"
                else ""
            )
            raise InputError(
                f"stream '{shown(stream)}': key property '{shown(prop)}'{column} maps to "
                f"{kind} {key.mode}; {needs}{hint}"
            )
