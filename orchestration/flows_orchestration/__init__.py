"""Dagster code location for the Meltano project in this repository (see definitions.py)."""
