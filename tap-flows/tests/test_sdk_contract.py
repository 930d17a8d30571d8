"""Fail loudly if singer-sdk changes under the hooks tap-flows relies on.

tap-flows overrides only public singer-sdk hooks, but the speed and the STATE cadence
depend on how the SDK calls them (see README, "Performance"). An SDK outside the pinned
range, or a hook whose signature moved, must stop the build here rather than silently
slow the tap down or change its STATE messages.
"""

from __future__ import annotations

import inspect
from importlib import metadata

import pytest
from singer_sdk import RESTStream, Stream, Tap, metrics
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage

from tap_flows.client import FlowsAPIStream
from tap_flows.tap import TapFlows


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
    ],
)
def test_overridden_and_called_hooks_keep_their_signature(
    owner: type, name: str, parameters: list[str]
) -> None:
    function = inspect.getattr_static(owner, name)
    if isinstance(function, classmethod):
        function = function.__func__
    assert list(inspect.signature(function).parameters) == parameters


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


def test_the_tap_uses_the_fast_settings() -> None:
    assert FlowsAPIStream.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE
    assert issubclass(TapFlows.message_writer_class, MsgSpecWriter)
    line = TapFlows.message_writer_class().format_message(
        RecordMessage(stream="flows", record={"id": 1})
    )
    assert bytes(line) == b'{"type":"RECORD","stream":"flows","record":{"id":1}}\n'
