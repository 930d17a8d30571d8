"""The RECORD fast path: every private singer-sdk method tap-flows overrides, in one place.

singer-sdk's per-record machinery (a `RecordMessage` per record, a selection pass, a
map call, a clock read, a state-manager update) costs the tap most of its time. When
nothing transforms the records, `SDKFastPathMixin` writes each RECORD line directly and
moves the bookmark only when a STATE is written. These overrides replace private SDK
methods, so `tests/test_sdk_contract.py` pins the SDK version, their signatures and
the order in which the SDK calls them, and checks that no other module overrides one.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform

from tap_flows.writer import BlockWriter

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record


class SDKFastPathMixin:
    """Direct RECORD lines and a deferred bookmark, for a sorted, incremental `Stream`.

    Mixed into `FlowsAPIStream` before `RESTStream`, so `super()` reaches the SDK's
    own methods. The stream sets `output` (the tap's message writer), `record_prefix`,
    `record_suffix` and `latest_record` (None) in its `__init__`.
    """

    @cached_property
    def passes_records_through(self) -> bool:
        """Whether records leave the tap exactly as the API sent them.

        True unless stream maps (aliases, filters, computed or removed properties,
        flattening) or a catalog's deselected properties change them. Only then may the
        fast paths skip the SDK's per-record selection and mapping: the RECORD writer
        (`_write_record_message`) and the raw BATCH files (`get_batches`).
        Evaluated on first use, during the sync, once the catalog and maps are loaded.
        """
        maps = self.stream_maps
        properties = self.schema.get("properties", {})
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == self.name
            and not maps[0].flattening_enabled
            and self.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE
            and self.replication_method == "INCREMENTAL"
            and all(self.mask[("properties", name)] for name in properties)
        )

    def _write_record_message(self, record: Record) -> None:
        """Write a RECORD straight into the block writer when nothing transforms records.

        singer-sdk builds a `RecordMessage` per record, pops deselected properties,
        runs the stream map, reads the clock and converts the message to a dict before
        encoding it: about 40% of the tap's time. When `passes_records_through`, the
        line is the same bytes built from a prefix, the record encoded in place, and a
        suffix holding the chunk's `time_extracted`.

        Args:
            record: The record, as the API sent it.
        """
        if self.writes_records_directly:
            self.output.write_record(self.record_prefix, record, self.record_suffix)
        else:
            super()._write_record_message(record)

    @cached_property
    def writes_records_directly(self) -> bool:
        """Whether `_write_record_message` may bypass the SDK (decided once per run)."""
        return self.passes_records_through and isinstance(self.output, BlockWriter)

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        """Remember the latest record; the bookmark moves only when a STATE is written.

        The stream is sorted and its bookmark is the last record's `time`, so applying
        only the latest record before each STATE gives the same state as applying every
        record (the SDK's state manager costs ~10% of the tap's time per record). A STATE
        written at any moment, including on SIGTERM, is at or behind the records emitted.

        Args:
            latest_record: The record just emitted.
            context: Stream partition or context dictionary.
        """
        if context is None:
            self.latest_record = latest_record
        else:
            super()._increment_stream_state(latest_record, context=context)

    def _write_state_message(self) -> None:
        """Move the bookmark to the latest record, then let the SDK write the STATE."""
        self.apply_latest_record()
        super()._write_state_message()

    def _finalize_state(self, state: dict | None = None) -> None:
        """Move the bookmark to the latest record before the SDK finalizes the state.

        Args:
            state: State object to promote progress markers with.
        """
        self.apply_latest_record()
        super()._finalize_state(state)

    def apply_latest_record(self) -> None:
        """Apply the deferred bookmark update of `_increment_stream_state`, if any."""
        record, self.latest_record = self.latest_record, None
        if record is not None:
            super()._increment_stream_state(record, context=None)
            self.state_manager.is_flushed = False
