"""Load methods: how one stream's batches reach its final table, one module per method.

A method is one object that owns everything specific to it:

* the extra column its staged rows carry (`sequenced`: the arrival order, so the latest
  record per key wins; `sequenced_across_runs`: that order starts at the run's start in
  microseconds, so it also orders the rows of different runs);
* the tables it prepares for a stream (`prepare`, on the main thread, before any record of
  the SCHEMA is staged) and the `TablePlan` the committer then works from;
* the commit of one batch (`commit`, on the committer thread);
* its end-of-run work (`finish`, after the last batch, before the final STATE);
* whether its rows reach the final table only at the end of the run (`commits_at_end`),
  in which case a STATE after its first record waits for `finish`.

Adding a method is one new module here plus its entry in `METHODS` (and its name in the
`load_method` setting's documentation).
"""

from __future__ import annotations

import logging

from target_bigquery_lite.identifiers import shown
from target_bigquery_lite.load_methods.append import APPEND
from target_bigquery_lite.load_methods.base import LoadMethod, TablePlan, TableRequest
from target_bigquery_lite.load_methods.dedup_view import DEDUP_VIEW
from target_bigquery_lite.load_methods.merge import MERGE
from target_bigquery_lite.load_methods.overwrite import OVERWRITE

__all__ = ["METHODS", "LoadMethod", "TablePlan", "TableRequest", "method_for"]

METHODS: dict[str, LoadMethod] = {
    method.name: method for method in (MERGE, APPEND, OVERWRITE, DEDUP_VIEW)
}

log = logging.getLogger("target_bigquery_lite")


def method_for(configured: str | None, stream: str, keys: tuple[str, ...]) -> LoadMethod:
    """The stream's method: the configured one, else `merge` with keys and `append` without."""
    if configured is None:
        return MERGE if keys else APPEND
    if configured == MERGE.name and not keys:
        log.warning(
            "stream '%s' has no key properties: appending instead of merging", shown(stream)
        )
        return APPEND
    return METHODS[configured]
