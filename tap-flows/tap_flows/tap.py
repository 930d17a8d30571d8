"""Placeholder entry point until the tap-flows issue lands."""

import sys


def main() -> int:
    """Say that the tap is not built yet."""
    print("tap-flows: not implemented yet (see the tap-flows issue)", file=sys.stderr)
    return 2
