"""Fail loudly if singer-sdk changes under the hooks tap-flows relies on.

The speed and the STATE cadence depend on how the SDK calls the hooks tap-flows
overrides (see README, "Performance"). Most are public; the RECORD fast path also
replaces four private methods (`_write_record_message`, `_increment_stream_state`,
`_write_state_message`, `_finalize_state`), all in `tap_flows/sdk_fast_path.py`, and the
BATCH path (`tap_flows/batch_mode.py`) calls `_write_starting_replication_value`. An SDK
outside the pinned range, a hook whose signature moved, a change in the order the SDK
calls them, or a private override anywhere else must stop the build here rather than
silently slow the tap down, change its output or its STATE messages.
"""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from importlib import metadata

import pytest
from singer_sdk import RESTStream, Stream, Tap, metrics
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams._state import StreamStateManager

from tap_flows.client import FlowsAPIStream
from tap_flows.sdk_fast_path import SDKFastPathMixin
from tap_flows.streams import FlowsStream
from tap_flows.tap import TapFlows
from tap_flows.writer import BlockWriter, record_prefix, record_suffix


def test_singer_sdk_is_within_the_pinned_range() -> None:
    version = tuple(int(part) for part in metadata.version("singer-sdk").split(".")[:3])
    assert (0, 54, 9) <= version < (0, 55, 0), (
        f"singer-sdk {version} is outside >=0.54.9,<0.55: re-check the hooks below, "
        "the STATE cadence test and the benchmark before widening the pin"
    )


@pytest.mark.parametrize(
    ("owner", "name", "parameters"),
    [
        (RESTStream, "request_records", ["self", "context"]),
        (RESTStream, "validate_response", ["self", "response"]),
        (RESTStream, "parse_response", ["self", "response"]),
        (RESTStream, "build_prepared_request", ["self", "args", "kwargs"]),
        (RESTStream, "get_url", ["self", "context"]),
        (RESTStream, "get_http_request_counter", ["self"]),
        (Stream, "get_record_counter", ["self", "endpoint", "log_interval"]),
        (Stream, "generate_child_contexts", ["self", "record", "context"]),
        (Stream, "get_starting_replication_key_value", ["self", "context"]),
        (Tap, "invoke", ["cls", "about", "about_format", "config", "state", "catalog"]),
        (Tap, "cb_config", ["cls", "ctx", "param", "value"]),
        (MsgSpecWriter, "write_message", ["self", "message"]),
        (MsgSpecWriter, "format_message", ["self", "message"]),
        (metrics.Counter, "increment", ["self", "value"]),
        (metrics.Counter, "exit", ["self"]),
        (Stream, "get_batch_config", ["self", "config"]),
        (Stream, "get_batches", ["self", "batch_config", "context"]),
        (Stream, "_write_record_message", ["self", "record"]),
        (Stream, "_increment_stream_state", ["self", "latest_record", "context"]),
        (Stream, "_write_state_message", ["self"]),
        (Stream, "_finalize_state", ["self", "state"]),
        (Stream, "_write_starting_replication_value", ["self", "context"]),
        (
            StreamStateManager,
            "increment_state",
            ["self", "latest_record", "context", "replication_key"],
        ),
        (StreamStateManager, "finalize_state", ["self", "state"]),
    ],
)
def test_overridden_and_called_hooks_keep_their_signature(
    owner: type, name: str, parameters: list[str]
) -> None:
    function = inspect.getattr_static(owner, name)
    if isinstance(function, classmethod):
        function = function.__func__
    assert list(inspect.signature(function).parameters) == parameters


def test_every_private_sdk_method_overridden_is_in_sdk_fast_path() -> None:
    overrides = {
        (cls.__module__, name)
        for cls in FlowsStream.__mro__
        if cls.__module__.startswith("tap_flows.")
        for name in vars(cls)
        if name.startswith("_")
        and not name.startswith("__")
        and callable(inspect.getattr_static(RESTStream, name, None))
    }
    assert overrides == {
        (SDKFastPathMixin.__module__, name)
        for name in (
            "_write_record_message",
            "_increment_stream_state",
            "_write_state_message",
            "_finalize_state",
        )
    }


def test_the_sdk_still_reads_the_attributes_the_tap_sets() -> None:
    source = inspect.getsource(Stream._sync_records)
    # One STATE per page relies on this counter test in the SDK's record loop.
    assert "% self.STATE_MSG_FREQUENCY == 0" in source
    assert "record_counter = self.get_record_counter()" in source
    assert "self.get_records(current_context)" in source
    assert "self.TYPE_CONFORMANCE_LEVEL" in inspect.getsource(Stream._generate_record_messages)
    assert "self.generate_child_contexts(" in inspect.getsource(Stream._process_record)
    assert isinstance(inspect.getattr_static(Stream, "check_sorted"), property)
    assert isinstance(inspect.getattr_static(Stream, "is_sorted"), property)
    counter = metrics.Counter(metrics.Metric.RECORD_COUNT)
    assert {"value", "last_log_time", "log_interval"} <= set(vars(counter))


def squeeze(source: str) -> str:
    """Source code without whitespace, to look for call sequences across line breaks."""
    return re.sub(r"\s+", "", source)


def test_the_sdk_still_calls_the_private_hooks_in_the_order_the_fast_paths_rely_on() -> None:
    records = squeeze(inspect.getsource(Stream._sync_records))
    # RECORD: each record is written, then the state incremented, through these hooks;
    # deferring the increment is only safe because STATEs go through _write_state_message.
    assert (
        squeeze(
            "self._write_record_message(record)"
            "self._increment_stream_state(record, context=current_context)"
        )
        in records
    )
    assert records.count("self._write_state_message()") == 2
    assert "self._finalize_state(" in records
    assert "self._write_starting_replication_value(current_context)" in records
    # BATCH: a STATE right after each BATCH message; get_batches moves the bookmark first.
    assert squeeze(
        "for encoding, manifest in self.get_batches(batch_config, context):"
        "counter.increment()"
        "self._write_batch_message(encoding=encoding, manifest=manifest)"
        "self._write_state_message()"
    ) in squeeze(inspect.getsource(Stream._sync_batches))
    assert "self.get_batch_config(self.config)" in inspect.getsource(Stream.sync)
    assert "self.state_manager.is_flushed" in inspect.getsource(Stream._write_state_message)
    assert "self.state_manager.is_flushed = False" in inspect.getsource(Stream._write_batch_message)
    # What the direct RECORD writer replaces: the message the SDK builds per record.
    generate = inspect.getsource(Stream._generate_record_messages)
    assert "time_extracted=utc_now()" in generate
    assert "version=self._stream_version" in generate


def test_direct_record_lines_are_the_bytes_the_sdk_writes() -> None:
    record = {"id": 7, "time": 3, "src_comp": "C1", "naïve": "é", "byte_count": 2**40}
    extracted = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
    writer = BlockWriter()
    writer.write_record(record_prefix("flows"), record, record_suffix(extracted))
    expected = BlockWriter().format_message(
        RecordMessage(stream="flows", record=record, time_extracted=extracted)
    )
    assert bytes(writer.pending) == bytes(expected)


def test_the_tap_uses_the_fast_settings() -> None:
    assert FlowsAPIStream.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE
    assert issubclass(TapFlows.message_writer_class, MsgSpecWriter)
    line = TapFlows.message_writer_class().format_message(
        RecordMessage(stream="flows", record={"id": 1})
    )
    assert bytes(line) == b'{"type":"RECORD","stream":"flows","record":{"id":1}}\n'
