"""flows-api: the source REST server for LANL network-flow records."""

__version__ = "0.1.0"
