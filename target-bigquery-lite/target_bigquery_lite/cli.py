"""Placeholder entry point until the target-bigquery-lite issue lands."""

import sys


def main() -> int:
    """Say that the target is not built yet."""
    print("target-bigquery-lite: not implemented yet (see its issue)", file=sys.stderr)
    return 2
