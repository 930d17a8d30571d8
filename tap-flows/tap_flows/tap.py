"""TapFlows: the tap's settings, its command line and its one stream."""

from __future__ import annotations

import io
import sys
from importlib import metadata
from typing import Any, ClassVar

import click
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.helpers.capabilities import (
    CapabilitiesEnum,
    PluginCapabilities,
    TapCapabilities,
)

from tap_flows.client import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_REQUEST_DEADLINE,
    DEFAULT_REQUEST_TIMEOUT,
)
from tap_flows.state_file import StateFileError, parse_state
from tap_flows.streams import FlowsStream
from tap_flows.validation import config_errors
from tap_flows.writer import BlockWriter

MAX_PAGE_SIZE = 1_000_000
"""The flows API's largest `limit`."""


class TapFlows(Tap):
    """Singer tap for the flows API: LANL network-flow records, streamed and incremental."""

    name = "tap-flows"
    message_writer_class = BlockWriter
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.DISCOVER,
        TapCapabilities.STATE,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.BATCH,
    ]

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_url",
            th.StringType,
            required=True,
            title="API URL",
            description=(
                "Base URL of the flows API, e.g. http://127.0.0.1:5055 (http or https, with a "
                "host and no query)."
            ),
        ),
        th.Property(
            "api_key",
            th.StringType,
            secret=True,
            title="API key",
            description=(
                "Sent as 'Authorization: Bearer <key>'. Leave unset when the API has no key."
            ),
        ),
        th.Property(
            "start_time",
            th.IntegerType(minimum=0),
            title="Start time",
            description=(
                "First `time` (LANL seconds, inclusive) to extract on the first run, when "
                "the state has no bookmark; unset: from the first row. Also a floor for "
                "later runs, so a partition never reads before its range."
            ),
        ),
        th.Property(
            "end_time",
            th.IntegerType(minimum=0),
            title="End time",
            description=(
                "Stop before this `time` (exclusive, the API's `until`); must be greater than "
                "`start_time`; unset: up to the newest row. [start_time, end_time) ranges "
                "partition a backfill."
            ),
        ),
        th.Property(
            "lookback_seconds",
            th.IntegerType(minimum=0),
            default=0,
            title="Lookback (seconds)",
            description=(
                "Later runs re-read rows from `bookmark - lookback_seconds` (inclusive) to "
                "catch rows that arrived late; the target's MERGE on `id` absorbs repeats."
            ),
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=MAX_PAGE_SIZE),
            default=DEFAULT_PAGE_SIZE,
            title="Page size",
            description=(
                "Rows per API request, 1 to 1,000,000. A STATE message follows each page, "
                "so this is also how much work a killed run can lose."
            ),
        ),
        th.Property(
            "request_timeout",
            th.IntegerType(minimum=1),
            default=DEFAULT_REQUEST_TIMEOUT,
            title="Request timeout (seconds)",
            description=(
                "Seconds to wait for a connection or for the next bytes of a response "
                "before retrying."
            ),
        ),
        th.Property(
            "request_deadline_seconds",
            th.IntegerType(minimum=1),
            default=DEFAULT_REQUEST_DEADLINE,
            title="Request deadline (seconds)",
            description=(
                "Longest time one request may take, body included (a server that sends a "
                "byte at a time never trips `request_timeout`); past it the request is sent "
                "again from the last row, as after a timeout. Keep it above the time a full "
                "page takes."
            ),
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=DEFAULT_MAX_RETRIES,
            title="Max retries",
            description=(
                "Retries, with exponential backoff and jitter, after connection errors, "
                "timeouts, cut responses, 429 (honouring Retry-After) and 5xx; the count "
                "restarts whenever a new row arrives."
            ),
        ),
        th.Property(
            "user_agent",
            th.StringType,
            default=f"tap-flows/{metadata.version('tap-flows')}",
            title="User agent",
            description="User-Agent header sent to the API.",
        ),
    ).to_dict()

    def __init__(self, *args: Any, validate_config: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, validate_config=validate_config, **kwargs)
        if validate_config:
            errors = config_errors(self.config)
            if errors:
                msg = "Config validation failed"
                raise ConfigValidationError(msg, errors=errors)

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> Any:
        """Read the --config files; a missing or malformed one is a usage error, not a traceback.

        Args:
            ctx: Click context.
            param: The --config option.
            value: The paths given (or 'ENV').

        Returns:
            The merged configuration, as singer-sdk's callback returns it.

        Raises:
            click.BadParameter: A file is missing, unreadable or not JSON.
        """
        try:
            return super().cb_config(ctx, param, value)
        except (OSError, ValueError) as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    @classmethod
    def invoke(cls, **kwargs: Any) -> None:
        """Run the CLI; a bad --state file or an API error ends it in one line, no traceback.

        Args:
            **kwargs: The CLI options, as singer-sdk's `Tap.invoke` takes them.

        Raises:
            click.BadParameter: The --state file is not a state of this tap (exit code 2).
        """
        state_file = kwargs.get("state")
        if state_file is not None:
            text = state_file.read()
            try:
                parse_state(text)
            except StateFileError as exc:
                msg = f"state file {state_file.name!r}: {exc}"
                raise click.BadParameter(msg, param_hint="'--state'") from None
            kwargs["state"] = io.StringIO(text)
        try:
            super().invoke(**kwargs)
        except FatalAPIError as exc:
            cls.logger.error("%s", exc)
            sys.exit(1)

    def discover_streams(self) -> list[Stream]:
        """The tap's only stream, `flows`."""
        return [FlowsStream(self)]
