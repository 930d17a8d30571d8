"""Pure tests: identifier sanitizing and quoting, SQL building."""

from __future__ import annotations

import pytest

from target_bigquery_lite.identifiers import (
    IdentifierError,
    column_name,
    quote,
    quote_table,
    table_name,
)
from target_bigquery_lite.merge import (
    build_delete_old_versions_sql,
    build_merge_sql,
    build_replace_sql,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("id", "id"),
        ("CamelCase", "CamelCase"),
        ("first name", "first_name"),
        ("a.b", "a_b"),
        ("naïve café", "naive_cafe"),
        ("名前", "__"),
        ("back`tick", "back_tick"),
        ("1st", "_1st"),
        ("", "_"),
        ("_PARTITIONTIME", "__PARTITIONTIME"),
        ("_table_suffix", "__table_suffix"),
        ("x); DROP TABLE t; --", "x___DROP_TABLE_t____"),
    ],
)
def test_column_names(name: str, expected: str) -> None:
    assert column_name(name) == expected


def test_column_name_too_long() -> None:
    with pytest.raises(IdentifierError, match="longer than 300"):
        column_name("x" * 301)


def test_table_names() -> None:
    assert table_name("flows`; DROP TABLE x; --") == "flows___DROP_TABLE_x____"
    assert table_name("public-users", "raw_") == "raw_public_users"
    assert table_name("test:SpecialChars!in?attributes") == "test_SpecialChars_in_attributes"


@pytest.mark.parametrize("bad", ["a`b", "a b", "", "1a", "a.b", "x; DROP", "é"])
def test_quote_refuses_anything_but_plain_identifiers(bad: str) -> None:
    with pytest.raises(IdentifierError):
        quote(bad)


def test_quote_table() -> None:
    assert quote_table("flows-local", "d_1", "t") == "`flows-local`.`d_1`.`t`"
    assert quote_table("example.com:proj", "d", "t") == "`example.com:proj`.`d`.`t`"
    for parts in (("p`", "d", "t"), ("p", "d-1", "t"), ("p", "d", "t`;"), ("p", "d", "")):
        with pytest.raises(IdentifierError):
            quote_table(*parts)


def test_merge_sql() -> None:
    sql = build_merge_sql("`p`.`d`.`t`", "`p`.`d`.`s`", ["id"], ["id", "time", "src"])
    assert sql == (
        "MERGE `p`.`d`.`t` AS T\n"
        "USING (\n"
        "  SELECT * EXCEPT (`_bqlite_seq`) FROM `p`.`d`.`s`\n"
        "  WHERE IF(`id` IS NULL, ERROR('a row of this batch has a null or missing key "
        "property'), TRUE)\n"
        "  QUALIFY ROW_NUMBER() OVER (\n"
        "    PARTITION BY `id` ORDER BY `_bqlite_seq` DESC) = 1\n"
        ") AS S\n"
        "ON T.`id` = S.`id`\n"
        "WHEN MATCHED THEN UPDATE SET\n"
        "    `time` = S.`time`,\n"
        "    `src` = S.`src`\n"
        "WHEN NOT MATCHED THEN INSERT (`id`, `time`, `src`)\n"
        "  VALUES (S.`id`, S.`time`, S.`src`)"
    )


def test_merge_sql_with_composite_key_and_only_key_columns() -> None:
    sql = build_merge_sql("`p`.`d`.`t`", "`p`.`d`.`s`", ["a", "b"], ["a", "b"])
    assert "PARTITION BY `a`, `b` ORDER BY" in sql
    assert "ON T.`a` = S.`a` AND T.`b` = S.`b`" in sql
    assert "WHERE IF(`a` IS NULL OR `b` IS NULL, ERROR(" in sql
    assert "WHEN MATCHED" not in sql  # nothing to update when every column is a key


def test_merge_sql_refuses_unsafe_column_names() -> None:
    with pytest.raises(IdentifierError):
        build_merge_sql("`p`.`d`.`t`", "`p`.`d`.`s`", ["id"], ["id", "x` = 1; DROP TABLE t; --"])


def test_delete_old_versions_sql_uses_a_parameter() -> None:
    assert build_delete_old_versions_sql("`p`.`d`.`t`") == (
        "DELETE FROM `p`.`d`.`t`\n"
        "WHERE `_sdc_table_version` IS NULL OR `_sdc_table_version` < @version"
    )


def test_replace_sql_is_one_transaction() -> None:
    assert build_replace_sql("`p`.`d`.`t`", "`p`.`d`.`o`", ["id", "v"]) == (
        "BEGIN TRANSACTION;\n"
        "DELETE FROM `p`.`d`.`t` WHERE TRUE;\n"
        "INSERT INTO `p`.`d`.`t` (`id`, `v`)\n"
        "SELECT `id`, `v` FROM `p`.`d`.`o`;\n"
        "COMMIT TRANSACTION;"
    )
