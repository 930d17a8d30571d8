"""tap-flows: a Singer tap for the flows API."""
