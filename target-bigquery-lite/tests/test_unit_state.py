"""Pure tests of the STATE rule: a state goes out only when the records before it are committed."""

from __future__ import annotations

import io
import json

from target_bigquery_lite.state import StateTracker


def text(value: object) -> bytes:
    return json.dumps(value).encode()


def written(out: io.BytesIO) -> list[object]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_state_with_nothing_pending_goes_out_at_once() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    tracker.received(text({"s": 0}), tag=0)
    assert written(out) == [{"s": 0}]


def test_state_waits_for_the_commit_covering_its_records() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    tracker.received(text({"s": 5}), tag=5)  # 5 records before it, none committed
    tracker.submitted(3)
    tracker.committed(3)
    assert written(out) == []  # records 4-5 are not committed yet
    tracker.submitted(7)
    tracker.committed(7)
    assert written(out) == [{"s": 5}]


def test_only_the_newest_state_per_flush_is_kept() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    for n in range(1, 1001):  # a tap that sends a STATE after every record
        tracker.received(text({"s": n}), tag=n)
    assert len(tracker._pending) == 1
    tracker.submitted(1000)
    tracker.committed(1000)
    assert written(out) == [{"s": 1000}]


def test_a_state_after_the_flush_waits_for_the_next_one() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    tracker.received(text({"s": 4}), tag=4)
    tracker.submitted(4)  # flush of records 1-4 in flight
    tracker.received(text({"s": 6}), tag=6)  # records 5-6 staged after it
    tracker.committed(4)
    assert written(out) == [{"s": 4}]
    tracker.submitted(6)
    tracker.committed(6)
    assert written(out) == [{"s": 4}, {"s": 6}]


def test_state_received_while_its_flush_is_in_flight() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    tracker.submitted(4)
    tracker.received(text({"s": 4}), tag=4)  # no records since the flush: covered by it
    assert written(out) == []
    tracker.committed(4)
    assert written(out) == [{"s": 4}]


def test_overwrite_records_hold_the_watermark_until_the_end() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    tracker.received(text({"s": 2}), tag=2)
    tracker.hold(3)  # record 3 belongs to an overwrite stream
    tracker.received(text({"s": 4}), tag=4)
    tracker.submitted(4)
    tracker.committed(4)
    assert written(out) == [{"s": 2}]
    tracker.finish(4)
    assert written(out) == [{"s": 2}, {"s": 4}]


def test_finish_writes_the_latest_state_again() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    tracker.received(text({"s": 1}), tag=0)
    tracker.finish(0)
    assert written(out) == [{"s": 1}, {"s": 1}]


def test_nothing_after_stop_and_never_an_empty_state() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    tracker.received(text({}), tag=0)
    tracker.received(text(None), tag=0)
    tracker.received(text({"s": 3}), tag=3)
    tracker.stop()
    tracker.committed(3)
    tracker.finish(3)
    tracker.received(text({"s": 9}), tag=0)
    assert out.getvalue() == b""
