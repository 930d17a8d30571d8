"""Error types the target reports, and the one place that sorts failures into transient or terminal.

Every error a user can cause or fix (bad config, bad input, an incompatible schema, a failed
BigQuery job) is a `TargetError`: the CLI prints its message as one line and exits non-zero
without a traceback. Only `is_transient` decides what is worth retrying, so the retry policy
cannot drift between call sites.
"""

from __future__ import annotations

import errno
import resource

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions

# BigQuery error reasons that mean "try again later" rather than "this request is wrong".
# https://cloud.google.com/bigquery/docs/error-messages
TRANSIENT_REASONS = frozenset(
    {
        "backendError",
        "internalError",
        "rateLimitExceeded",
        "jobBackendError",
        "jobInternalError",
        "jobRateLimitExceeded",
        "tableUnavailable",
    }
)
# Concurrent changes: BigQuery aborts one DML transaction; the emulator (DuckLake) fails one
# catalog commit when parallel runs create datasets or tables. Rerunning either is correct.
CONCURRENT_UPDATE_MARKERS = (
    "Could not serialize access",
    "concurrent update",
    "Failed to commit DuckLake transaction",
)

TRANSIENT_HTTP_ERRORS = (
    api_exceptions.TooManyRequests,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.ServiceUnavailable,
    api_exceptions.GatewayTimeout,
)
TRANSIENT_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    auth_exceptions.TransportError,
    ConnectionError,
    TimeoutError,
)


class TargetError(Exception):
    """A failure reported to the user as one line, without a traceback."""

    exit_code = 1


class ConfigError(TargetError):
    """The config file is missing, unreadable or holds an invalid setting."""

    exit_code = 2


class InputError(TargetError):
    """The Singer input is malformed: bad JSON, a RECORD before its SCHEMA, an invalid schema."""


class RecordError(InputError):
    """A record violates its stream's schema or lacks a key property."""


class StagingError(TargetError):
    """A staging file cannot be written: disk full, file size limit, `staging_dir` unusable."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        """`errno` is the failed call's, so the caller can tell a full disk."""
        super().__init__(message)
        self.errno = errno

    @classmethod
    def writing(cls, path: object, exc: OSError) -> StagingError:
        """The error for a failed write (or create, or flush) of the staging file `path`."""
        reason = exc.strerror or str(exc)
        return cls(f"cannot write staging file {path}: {reason} (errno {exc.errno}); "
                   f"{_staging_hint(exc.errno)}", exc.errno)  # fmt: skip


def _staging_hint(number: int | None) -> str:
    """What to do about a failed staging write, by its cause."""
    if number in (errno.EMFILE, errno.ENFILE):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return (
            f"the process may open at most {soft} files (ulimit -n): raise that limit; the "
            "target keeps at most a quarter of it open for staging files"
        )
    if number == errno.EFBIG:
        return "a file size limit (ulimit -f) stopped it: raise the limit or lower batch_max_bytes"
    if number in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full: free space in staging_dir, or point staging_dir at another disk"
    return "check staging_dir: it must be a writable folder on a disk with room for two batches"


class SchemaChangeError(TargetError):
    """A stream's schema cannot be applied to its existing BigQuery table."""


class BigQueryError(TargetError):
    """A BigQuery call or job failed terminally, or kept failing after all retries."""


class StopSignalError(BaseException):
    """SIGTERM or SIGINT arrived: stop at once without emitting state for uncommitted data.

    A `BaseException`, like `KeyboardInterrupt`, so no `except Exception` on the way (retry
    loops included) can swallow it.
    """

    def __init__(self, signal_number: int, signal_name: str) -> None:
        """Remember the signal so the exit code can follow the shell convention (128 + n)."""
        super().__init__(f"stopped by {signal_name}; no state emitted for uncommitted records")
        self.exit_code = 128 + signal_number


def error_reasons(exc: BaseException) -> list[str]:
    """The BigQuery `reason` strings attached to an API error (empty for other errors)."""
    errors = getattr(exc, "errors", None) or []
    return [str(err.get("reason", "")) for err in errors if isinstance(err, dict)]


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request could succeed (network trouble, overload, aborts)."""
    if isinstance(exc, TRANSIENT_HTTP_ERRORS + TRANSIENT_NETWORK_ERRORS):
        return True
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        if any(reason in TRANSIENT_REASONS for reason in error_reasons(exc)):
            return True
        message = str(exc)
        return any(marker in message for marker in CONCURRENT_UPDATE_MARKERS)
    return False


def describe(exc: BaseException, limit: int = 5) -> str:
    """One line naming the error and its first BigQuery errors, for logs and messages."""
    if isinstance(exc, auth_exceptions.GoogleAuthError):  # raised only while getting a token
        return " ".join(
            f"could not get an access token for the configured credentials "
            f"({type(exc).__name__}: {exc})".split()
        )
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        head = f"{exc.code} {exc.message}".strip()
        details = [
            f"{err.get('reason', '?')}: {err.get('message', '')}".strip()
            for err in (exc.errors or [])[:limit]
            if isinstance(err, dict) and str(err.get("message", "")) not in head
        ]
        text = head if not details else f"{head} [first errors: {'; '.join(details)}]"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
