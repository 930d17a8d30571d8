"""Setting checks that JSON Schema cannot express, run before the tap makes any request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks that JSON Schema cannot express: a usable URL, a non-empty time range.

    Args:
        config: The settings, already valid against `config_jsonschema`.

    Returns:
        One message per problem, each naming the setting.
    """
    errors = []
    if not is_http_url(str(config.get("api_url", ""))):
        errors.append(
            f"api_url must be an http(s) URL such as http://127.0.0.1:5055, "
            f"got {config.get('api_url')!r}"
        )
    start, end = config.get("start_time"), config.get("end_time")
    if start is not None and end is not None and end <= start:
        errors.append(
            f"end_time ({end}) must be greater than start_time ({start}): "
            "end_time is exclusive, so the range would be empty"
        )
    return errors


def is_http_url(value: str) -> bool:
    """Whether `value` is an absolute http(s) URL with a host, a valid port and no query."""
    url = urlsplit(value)
    try:
        url.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return False
    return url.scheme in {"http", "https"} and bool(url.hostname) and not url.query
