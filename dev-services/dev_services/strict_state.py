"""What the strict BigQuery front remembers: violations, principals, locations, etags, counts.

Violations go to one log per process (`VIOLATIONS`), so the pytest plugin can fail the test
that caused them whichever front saw them. A test that expects a violation claims it
(`VIOLATIONS.claim(kind)`); whatever is left unclaimed at its teardown fails it.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

ADMIN_TOKEN = "dev-services-admin"  # noqa: S105 - the harness's identity, not a secret
DAILY_TABLE_OPERATIONS = 1_500  # BigQuery: table operations per table per day
MULTI_REGIONS = frozenset({"us", "eu"})  # jobs there are found without a location


@dataclass(frozen=True)
class Principal:
    """Who sends a request, and the permissions BigQuery would check for it."""

    name: str
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        """Whether the principal holds `permission` (`*` holds every one)."""
        return "*" in self.permissions or permission in self.permissions


ADMIN = Principal("harness admin", frozenset({"*"}))
# BigQuery Data Editor on the dataset plus Job User on the project (the README's setup):
# no bigquery.datasets.create, update or delete.
LEAST_PRIVILEGE = Principal(
    "BigQuery Data Editor on the dataset + BigQuery Job User on the project",
    frozenset({
        "bigquery.datasets.get", "bigquery.tables.create", "bigquery.tables.delete",
        "bigquery.tables.get", "bigquery.tables.getData", "bigquery.tables.list",
        "bigquery.tables.update", "bigquery.tables.updateData", "bigquery.jobs.create",
    }),
)  # fmt: skip


@dataclass(frozen=True)
class Violation:
    """A request BigQuery would have refused (the front refused it too)."""

    number: int
    kind: str
    message: str
    request: str

    def describe(self) -> str:
        """One line (plus the request, shortened) for failure messages."""
        request = self.request if len(self.request) <= 400 else self.request[:400] + " ..."
        return f"[{self.kind}] {self.message}\n    request: {request}"


class ViolationLog:
    """Every violation of this process, in order; tests claim the ones they expect."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._items: list[Violation] = []
        self._claimed: set[int] = set()
        self._numbers = itertools.count()

    def record(self, kind: str, message: str, request: str) -> Violation:
        """Add a violation (kinds: `sql`, `load`, `partition-filter`, `permission`, ...)."""
        with self._lock:
            violation = Violation(next(self._numbers), kind, message, request)
            self._items.append(violation)
            return violation

    def mark(self) -> int:
        """A position to look back to (the number of the next violation)."""
        with self._lock:
            return len(self._items)

    def since(self, mark: int, kind: str | None = None) -> list[Violation]:
        """Violations recorded after `mark` (of `kind`, if given)."""
        with self._lock:
            return [v for v in self._items[mark:] if kind is None or v.kind == kind]

    def claim(self, mark: int, kind: str | None = None) -> list[Violation]:
        """Take the violations after `mark` (of `kind`) as expected: they fail no test."""
        found = self.since(mark, kind)
        with self._lock:
            self._claimed.update(v.number for v in found)
        return found

    def unclaimed(self, mark: int) -> list[Violation]:
        """Violations after `mark` that no test claimed."""
        with self._lock:
            return [v for v in self._items[mark:] if v.number not in self._claimed]

    def total(self) -> int:
        """How many violations this process saw."""
        with self._lock:
            return len(self._items)


VIOLATIONS = ViolationLog()


def default_principal() -> Principal:
    """Least privilege, unless `STRICT_BIGQUERY_PRINCIPAL=admin` (to look past that rule)."""
    return ADMIN if os.environ.get("STRICT_BIGQUERY_PRINCIPAL") == "admin" else LEAST_PRIVILEGE


@dataclass
class StrictState:
    """The front's memory, kept across restarts of the emulator behind it."""

    project: str
    principal: Principal = field(default_factory=default_principal)
    daily_table_operations: int = DAILY_TABLE_OPERATIONS
    not_found_after_conflict: bool = True
    dataset_locations: dict[tuple[str, str], str] = field(default_factory=dict)
    etags: dict[tuple[str, str, str], str] = field(default_factory=dict)
    job_locations: dict[tuple[str, str], str] = field(default_factory=dict)
    failed_jobs: dict[tuple[str, str], dict] = field(default_factory=dict)
    conflicted_jobs: set[tuple[str, str]] = field(default_factory=set)
    operations: Counter[str] = field(default_factory=Counter)
    statements: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def new_etag(self, table: tuple[str, str, str]) -> str:
        """Give the table a new etag (after any change of its metadata)."""
        with self.lock:
            self.etags[table] = uuid.uuid4().hex
            return self.etags[table]

    def etag(self, table: tuple[str, str, str]) -> str:
        """The table's current etag (one is made for a table first seen now)."""
        with self.lock:
            return self.etags.get(table) or self.new_etag(table)

    def count_operation(self, table: str) -> bool:
        """Count one table-modifying job; False when the table's daily quota is used up."""
        with self.lock:
            if self.operations[table] >= self.daily_table_operations:
                return False
            self.operations[table] += 1
            return True


STATES: list[StrictState] = []  # every front's state in this process, for the session report
