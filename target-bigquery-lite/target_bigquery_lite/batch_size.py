"""How big a batch may grow: the configured limits, grown to respect BigQuery's table quota.

BigQuery allows about 1,500 table-modifying operations (load jobs, DML such as MERGE) per
table per day. Every method modifies one table once per batch (merge: the MERGE into the
final table; append: the load into it; overwrite: the load into the run's table; the end of
the run adds one for overwrite's swap and one for a version clean-up). A long backfill at
the default 500,000 rows a batch would need thousands. So, within one run:

* once a stream's batches reach a tenth of `max_table_operations`, the batch limits
  (`batch_max_rows`, `batch_max_bytes`) double, and double again every further tenth, up to
  `MAX_GROWTH` times the configured ones (memory stays flat; staging disk grows with them);
* a batch that would take a table past `max_table_operations` fails the run before it is
  committed, with a message saying what to change, instead of failing at BigQuery's quota.
"""

from __future__ import annotations

import logging

from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import TargetError
from target_bigquery_lite.identifiers import shown

MAX_GROWTH = 8

log = logging.getLogger("target_bigquery_lite")


class TableQuotaError(TargetError):
    """A run would modify one table more often than `max_table_operations` allows."""


class BatchSizer:
    """The current batch limits of a run, from the settings and the busiest stream."""

    def __init__(self, settings: Settings) -> None:
        """Start at the configured limits."""
        self.settings = settings
        self.growth = 1

    @property
    def max_rows(self) -> int:
        """Rows a batch may hold now."""
        return self.settings.batch_max_rows * self.growth

    @property
    def max_bytes(self) -> int:
        """Staged bytes a batch may hold now."""
        return self.settings.batch_max_bytes * self.growth

    def before_commit(self, operations: dict[str, int]) -> None:
        """A batch is about to be committed; `operations`: each stream's so far in this run.

        Raises:
            TableQuotaError: when the batch would take a stream's table past the limit.
        """
        limit = self.settings.max_table_operations
        stream, done = max(operations.items(), key=lambda item: item[1])
        if done + 1 > limit:
            raise TableQuotaError(
                f"stream '{shown(stream)}': this batch would be operation {done + 1} on its "
                f"table in this run, past max_table_operations ({limit}; BigQuery allows "
                "about 1,500 table operations a table a day); nothing of it was committed. "
                "Raise batch_max_rows and batch_max_bytes, or spread the load over several "
                "days (a partitioned backfill)"
            )
        step = max(1, limit // 10)
        growth = min(MAX_GROWTH, 2 ** ((done + 1) // step))
        if growth != self.growth:
            self.growth = growth
            log.info(
                "stream '%s' has had %d batches in this run: batches grow to %d rows or %d "
                "bytes (x%d) to stay within BigQuery's table-operation quota",
                shown(stream),
                done + 1,
                self.max_rows,
                self.max_bytes,
                growth,
            )
