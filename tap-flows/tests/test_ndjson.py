"""NDJSON chunk parsing: whole lines only, wherever the chunks split them."""

from __future__ import annotations

import orjson
import pytest

from tap_flows.ndjson import MAX_LINE_BYTES, BadLineError, TruncatedBodyError, iter_record_chunks

ROWS = [{"id": i, "time": i // 3, "src_comp": f"C{i}"} for i in range(1, 50)]
BODY = b"".join(orjson.dumps(row) + b"\n" for row in ROWS)


def split(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def collect(chunks: list[bytes], seen: list[dict]) -> None:
    """Parse into `seen`, so a test can look at what came out before an error."""
    for records in iter_record_chunks(chunks):
        seen += records


@pytest.mark.parametrize("size", [1, 7, 64, 1_000, len(BODY)])
def test_rows_come_out_whole_whatever_the_chunk_size(size: int) -> None:
    chunks = list(iter_record_chunks(split(BODY, size)))
    assert [row for chunk in chunks for row in chunk] == ROWS


def test_an_empty_body_has_no_rows() -> None:
    assert [row for chunk in iter_record_chunks([]) for row in chunk] == []


def test_a_body_cut_mid_line_raises_after_the_complete_rows() -> None:
    cut = BODY[: BODY.index(b'"id":10') + 5]
    seen = []
    with pytest.raises(TruncatedBodyError, match="in the middle of line 10"):
        collect(split(cut, 50), seen)
    assert seen == ROWS[:9]


def test_a_complete_last_line_without_its_newline_is_still_a_truncation() -> None:
    with pytest.raises(TruncatedBodyError, match="line 49"):
        list(iter_record_chunks([BODY[:-1]]))


def test_a_bad_line_is_named_with_an_excerpt_and_its_chunk_is_not_emitted() -> None:
    lines = BODY.splitlines(keepends=True)
    body = b"".join(lines[:20]) + b"oops, not json at all\n" + b"".join(lines[20:])
    seen = []
    with pytest.raises(BadLineError, match=r"line 21 of the response is not valid JSON: b'oops"):
        collect(split(body, 300), seen)
    assert seen == ROWS[: len(seen)]
    assert len(seen) < 20


def test_an_endless_line_is_refused_instead_of_buffered() -> None:
    chunks = [b"x" * (1 << 18)] * 5
    with pytest.raises(BadLineError, match=f"longer than {MAX_LINE_BYTES} bytes"):
        list(iter_record_chunks(chunks))
