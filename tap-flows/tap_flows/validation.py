"""Setting checks that JSON Schema cannot express, run before the tap makes any request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """Checks that JSON Schema cannot express: a usable URL and key, a non-empty time range.

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
    api_key = config.get("api_key")
    if api_key:
        problem = api_key_problem(str(api_key))
        if problem:
            errors.append(problem)
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


def api_key_problem(key: str) -> str | None:
    """Why `key` cannot go into an HTTP header as it is, in words that never quote it.

    Header values are bytes (Latin-1 at most) without line breaks, and a bearer token is
    visible ASCII: a key pasted with its newline, a space or a non-ASCII letter would make
    `requests` fail later with a traceback that prints the key.

    Args:
        key: The `api_key` setting.

    Returns:
        The message naming the setting, the kind of character and its position, or None.
    """
    for position, char in enumerate(key, start=1):
        if "!" <= char <= "~":
            continue
        if char in "\r\n":
            kind = "a line break (a copy-paste of the key with its newline?)"
        elif char.isspace():
            kind = "whitespace"
        elif not char.isprintable():
            kind = "a control character"
        else:
            kind = "a non-ASCII character"
        return (
            f"api_key has {kind} at character {position} of {len(key)}: a key must be "
            "visible ASCII characters only (the key itself is not shown)"
        )
    return None
