"""Deterministic LANL-shaped synthetic flow records.

The shape follows the LANL "flows" data set: a handful of busy computers and
ports, mostly TCP, heavy-tailed packet and byte counts, and many flows per second.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import accumulate

from flows_api.db import Row

_COMPUTERS = 20_000
_WELL_KNOWN_PORTS = (
    "80", "443", "53", "445", "389", "88", "135", "137", "138", "139",
    "22", "123", "3389", "514", "161", "N1", "N2", "N5",
)  # fmt: skip
_PROTOCOLS = (6, 17, 1)
_PROTOCOL_WEIGHTS = (0.72, 0.25, 0.03)
_ROWS_PER_SECOND = 20
_BATCH = 4096


def _zipf_cum_weights(n: int, exponent: float) -> list[float]:
    return list(accumulate(1.0 / (rank**exponent) for rank in range(1, n + 1)))


def generate_rows(
    count: int, start_time: int = 1, start_id: int = 1, seed: int = 0
) -> Iterator[Row]:
    """Yield `count` rows with ids from `start_id` and non-decreasing times from `start_time`.

    The same arguments always give the same rows; a different `start_id` gives a
    different but equally reproducible sequence (used by `append`).
    """
    rng = random.Random(f"flows:{seed}:{start_id}")  # noqa: S311 - reproducible data, not secrets
    computers = [f"C{i}" for i in range(1, _COMPUTERS + 1)]
    computer_weights = _zipf_cum_weights(_COMPUTERS, 1.1)
    port_weights = list(accumulate(1.0 / rank for rank in range(1, len(_WELL_KNOWN_PORTS) + 1)))
    time = start_time
    next_id = start_id
    end_id = start_id + count
    advance = 1.0 / _ROWS_PER_SECOND
    while next_id < end_id:
        k = min(_BATCH, end_id - next_id)
        sources = rng.choices(computers, cum_weights=computer_weights, k=k)
        destinations = rng.choices(computers, cum_weights=computer_weights, k=k)
        protocols = rng.choices(_PROTOCOLS, weights=_PROTOCOL_WEIGHTS, k=k)
        services = rng.choices(_WELL_KNOWN_PORTS, cum_weights=port_weights, k=k)
        rand = rng.random
        for i in range(k):
            if rand() < advance:
                time += 1 + (rand() < 0.01) * int(rng.expovariate(0.05))
            ephemeral = f"N{int(rand() * 60_000) + 1}"
            if rand() < 0.5:
                src_port, dst_port = ephemeral, services[i]
            else:
                src_port, dst_port = services[i], ephemeral
            duration = int(rng.expovariate(0.05)) if rand() < 0.35 else 0
            packets = min(int(rng.paretovariate(1.1)), 5_000_000)
            size = 40 + int(rand() * rand() * 1460)
            yield (
                next_id,
                time,
                duration,
                sources[i],
                src_port,
                destinations[i],
                dst_port,
                protocols[i],
                packets,
                packets * size,
            )
            next_id += 1
