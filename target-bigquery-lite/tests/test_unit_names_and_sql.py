"""Pure tests: identifier sanitizing and quoting, SQL building."""

from __future__ import annotations

import random
import unicodedata

import pytest

from target_bigquery_lite.identifiers import (
    IdentifierError,
    column_name,
    quote,
    quote_table,
    table_name,
)
from target_bigquery_lite.load_methods.merge import build_merge_sql
from target_bigquery_lite.load_methods.overwrite import build_replace_sql
from target_bigquery_lite.versions import build_delete_old_versions_sql


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("id", "id"),
        ("CamelCase", "CamelCase"),
        ("first name", "first_name"),
        ("a.b", "a_b"),
        ("naïve café", "naive_cafe"),
        ("名前", "名前"),
        ("заказы", "заказы"),
        ("Größe", "Große"),
        ("Йошкар-Ола", "Йошкар_Ола"),
        ("и\u0306", "й"),  # decomposed input is composed first
        ("ﬁle", "file"),
        ("नमस्ते", "नमस्ते"),  # Devanagari with its vowel marks
        ("emoji 🙂", "emoji__"),
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


SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙ",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔ",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשת",
    "devanagari": "कखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसह",
    "cjk": "日本語中文字表名前流量記録",
    "hangul": "한국어테이블이름기록",
    "thai": "กขคงจฉชซญดตถทนบปผพฟภมยรลวศษสห",
    "digits": "0123456789\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_names_in_every_script_stay_distinct(script: str) -> None:
    rng = random.Random(f"names-{script}")  # fixed: a failure names its inputs
    letters = SCRIPTS[script] + ("_" if script != "digits" else "")
    names = {"".join(rng.choice(letters) for _ in range(rng.randint(1, 12))) for _ in range(400)}
    columns = {column_name(name) for name in names}
    tables = {table_name(name) for name in names}
    assert len(columns) == len(tables) == len(names)  # nothing folds together
    for name in names:
        assert quote(column_name(name)) == f"`{column_name(name)}`"
        assert table_name(name) == unicodedata.normalize("NFC", name)
        assert quote_table("p", "d", table_name(name, "raw_"))


def test_folded_names_are_plain_and_quotable() -> None:
    rng = random.Random(20261201)
    alphabet = "".join(SCRIPTS.values()) + " .-/$`;'\"\n\t\u200béèüñçÅ🙂\u0301\u0306"
    for _ in range(2000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        column, table = column_name(name), table_name(name, "p_")
        assert quote(column) == f"`{column}`"
        assert quote_table("p", "d", table).endswith(f".`{table}`")
        assert "`" not in column
        assert "\\" not in table


def test_table_names() -> None:
    assert table_name("flows`; DROP TABLE x; --") == "flows___DROP_TABLE_x____"
    assert table_name("public-users", "raw_") == "raw_public_users"
    assert table_name("test:SpecialChars!in?attributes") == "test_SpecialChars_in_attributes"


@pytest.mark.parametrize(
    "bad", ["a`b", "a b", "", "1a", "a.b", "x; DROP", "a\u200bb", "a\nb", "a\\b", "🙂"]
)
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
        "MERGE `p`.`d`.`t` AS _TABLE_target\n"
        "USING (\n"
        "  SELECT * EXCEPT (`_bqlite_seq`) FROM `p`.`d`.`s`\n"
        "  WHERE IF(`id` IS NULL, ERROR('a row of this batch has a null or missing key "
        "property'), TRUE)\n"
        "  QUALIFY ROW_NUMBER() OVER (\n"
        "    PARTITION BY `id` ORDER BY `_bqlite_seq` DESC) = 1\n"
        ") AS _TABLE_batch\n"
        "ON _TABLE_target.`id` = _TABLE_batch.`id`\n"
        "WHEN MATCHED THEN UPDATE SET\n"
        "    `time` = _TABLE_batch.`time`,\n"
        "    `src` = _TABLE_batch.`src`\n"
        "WHEN NOT MATCHED THEN INSERT (`id`, `time`, `src`)\n"
        "  VALUES (_TABLE_batch.`id`, _TABLE_batch.`time`, _TABLE_batch.`src`)"
    )


def test_merge_sql_with_composite_key_and_only_key_columns() -> None:
    sql = build_merge_sql("`p`.`d`.`t`", "`p`.`d`.`s`", ["a", "b"], ["a", "b"])
    assert "PARTITION BY `a`, `b` ORDER BY" in sql
    assert "ON _TABLE_target.`a` = _TABLE_batch.`a` AND _TABLE_target.`b` = " in sql
    assert "WHERE IF(`a` IS NULL OR `b` IS NULL, ERROR(" in sql
    assert "WHEN MATCHED" not in sql  # nothing to update when every column is a key


def test_merge_sql_refuses_unsafe_column_names() -> None:
    with pytest.raises(IdentifierError):
        build_merge_sql("`p`.`d`.`t`", "`p`.`d`.`s`", ["id"], ["id", "x` = 1; DROP TABLE t; --"])


def test_delete_old_versions_sql_uses_parameters() -> None:
    assert build_delete_old_versions_sql("`p`.`d`.`t`") == (
        "DELETE FROM `p`.`d`.`t`\n"
        "WHERE `_sdc_table_version` < @version\n"
        "   OR (`_sdc_table_version` IS NULL AND `_bqlite_run` IS DISTINCT FROM @run)"
    )


def test_replace_sql_is_one_transaction() -> None:
    assert build_replace_sql("`p`.`d`.`t`", "`p`.`d`.`o`", ["id", "v"]) == (
        "BEGIN TRANSACTION;\n"
        "DELETE FROM `p`.`d`.`t` WHERE TRUE;\n"
        "INSERT INTO `p`.`d`.`t` (`id`, `v`)\n"
        "SELECT `id`, `v` FROM `p`.`d`.`o`;\n"
        "COMMIT TRANSACTION;"
    )
