"""SQL that moves staged rows into final tables: MERGE, version clean-up, atomic overwrite.

The builders are pure functions of already-validated names: every identifier passes
through `quote`/`quote_table` (which refuse anything but plain identifiers) and every value
is a query parameter, so no stream or property name can inject SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from target_bigquery_lite.identifiers import quote

SEQUENCE_COLUMN = "_bqlite_seq"
VERSION_COLUMN = "_sdc_table_version"
VERSION_PARAMETER = "version"
# A row without its key could never be matched, so every rerun would insert it again.
NULL_KEY_ERROR = "a row of this batch has a null or missing key property"


def build_merge_sql(target: str, source: str, keys: Sequence[str], columns: Sequence[str]) -> str:
    """MERGE the staging table `source` into `target` on `keys`, latest record winning.

    Within the batch only the last-arrived row per key survives (`SEQUENCE_COLUMN`, the
    arrival order, exists only in the staging table). Only `columns` (the batch's own) are
    updated or inserted, so a final table with more columns (added by earlier schemas or by
    hand) never breaks the statement; columns it lacks keep their values. A row with a null
    key fails the statement (records are checked before staging, raw BATCH rows are not).
    """
    keys_sql = [quote(key) for key in keys]
    columns_sql = [quote(column) for column in columns]
    partition = ", ".join(keys_sql)
    null_key = " OR ".join(f"{key} IS NULL" for key in keys_sql)
    matched = " AND ".join(f"T.{key} = S.{key}" for key in keys_sql)
    updates = ",\n    ".join(f"{col} = S.{col}" for col in columns_sql if col not in keys_sql)
    update_clause = f"WHEN MATCHED THEN UPDATE SET\n    {updates}\n" if updates else ""
    return (
        f"MERGE {target} AS T\n"
        f"USING (\n"
        f"  SELECT * EXCEPT ({quote(SEQUENCE_COLUMN)}) FROM {source}\n"
        f"  WHERE IF({null_key}, ERROR('{NULL_KEY_ERROR}'), TRUE)\n"
        f"  QUALIFY ROW_NUMBER() OVER (\n"
        f"    PARTITION BY {partition} ORDER BY {quote(SEQUENCE_COLUMN)} DESC) = 1\n"
        f") AS S\n"
        f"ON {matched}\n"
        f"{update_clause}"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns_sql)})\n"
        f"  VALUES ({', '.join(f'S.{col}' for col in columns_sql)})"
    )


def build_delete_old_versions_sql(target: str) -> str:
    """Delete rows of versions older than `@version` (and rows loaded without a version)."""
    column = quote(VERSION_COLUMN)
    return f"DELETE FROM {target}\nWHERE {column} IS NULL OR {column} < @{VERSION_PARAMETER}"


def build_replace_sql(target: str, source: str, columns: Sequence[str]) -> str:
    """Replace all rows of `target` with those of `source` in one transaction.

    Readers see the old rows or the new ones, never a mix or an empty table; the table keeps
    its schema, partitioning, clustering and descriptions (a copy job would replace them).
    """
    columns_sql = ", ".join(quote(column) for column in columns)
    return (
        "BEGIN TRANSACTION;\n"
        f"DELETE FROM {target} WHERE TRUE;\n"
        f"INSERT INTO {target} ({columns_sql})\n"
        f"SELECT {columns_sql} FROM {source};\n"
        "COMMIT TRANSACTION;"
    )
