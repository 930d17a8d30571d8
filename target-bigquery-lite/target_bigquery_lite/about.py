"""`--about`: the target's name, version, capabilities and settings, as JSON or Markdown.

Generated from `config.SETTINGS`, so the README's settings table (made with
`target-bigquery-lite --about --format markdown`) always matches the code.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson

from target_bigquery_lite.config import SETTINGS

NAME = "target-bigquery-lite"
DESCRIPTION = (
    "Minimal exactly-once Singer target for BigQuery: NDJSON staging on disk, load job, "
    "MERGE on the key properties, STATE only after commit."
)
CAPABILITIES = ("about", "activate-version", "batch", "validate-records")


def package_version() -> str:
    """The installed package version."""
    try:
        return version(NAME)
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def about_info() -> dict[str, Any]:
    """The `--about --format json` document (singer-sdk's shape: settings as JSON Schema)."""
    properties = {}
    for setting in SETTINGS:
        prop: dict[str, Any] = {"type": setting.kind, "description": setting.description}
        if setting.kind == "array":
            prop["items"] = {"type": "string"}
        if setting.default is not None:
            prop["default"] = setting.default
        properties[setting.name] = prop
    return {
        "name": NAME,
        "description": DESCRIPTION,
        "version": package_version(),
        "capabilities": list(CAPABILITIES),
        "settings": {
            "type": "object",
            "properties": properties,
            "required": [setting.name for setting in SETTINGS if setting.required],
        },
    }


def settings_table() -> str:
    """The Markdown settings table: Setting | Type | Required | Default | Description."""
    rows = [
        "| Setting | Type | Required | Default | Description |",
        "|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        default = "" if setting.default is None else f"`{orjson.dumps(setting.default).decode()}`"
        required = "yes" if setting.required else "no"
        cells = (f"`{setting.name}`", setting.kind, required, default, setting.description)
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def render(output_format: str) -> str:
    """`--about` output in `json` or `markdown`."""
    info = about_info()
    if output_format == "json":
        return orjson.dumps(info, option=orjson.OPT_INDENT_2).decode()
    capabilities = ", ".join(f"`{name}`" for name in info["capabilities"])
    return (
        f"# {NAME}\n\n{DESCRIPTION}\n\nVersion: {info['version']}\n\n"
        f"## Capabilities\n\n{capabilities}\n\n## Settings\n\n{settings_table()}\n"
    )
