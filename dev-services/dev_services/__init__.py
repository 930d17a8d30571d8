"""Local services for development, tests and benchmarks: flows-api and the BigQuery emulator."""
