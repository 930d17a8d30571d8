"""Cloud Storage staging: upload a batch's staging files as objects, delete them once committed.

With `gcs_bucket` set, the committer uploads each closed staging file before its load job
and the job reads the object's `gs://` URI (`load.load_uris`). Names follow `gcs_archive`.

* **Memory stays flat**: the file is streamed from disk. Files up to 8 MiB go in one
  request; larger ones as a resumable upload in `UPLOAD_CHUNK_SIZE` chunks, so at most one
  chunk is in memory however large the batch is, and an interrupted chunk is resent, not
  the whole file.
* **Created once, never overwritten** (`ifGenerationMatch=0`): Storage Object Creator is
  enough to stage. A retry that finds the object already there (an earlier try arrived)
  checks its size instead of writing it again.
* **Rerun-safe**: every name holds the run id and the batch number, and a load job lists
  exactly its batch's objects, never a wildcard, so objects a killed run left behind are
  never loaded by a later run.
* **State after commit unchanged**: objects are deleted (`gcs_keep_objects: false`) only
  after their batch is committed; a failed delete is logged and leaves the object (a
  lifecycle rule removes it), never failing a committed batch. With `gcs_keep_objects: true`
  nothing is deleted: every committed batch's objects stay, as an archive.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, date, datetime
from pathlib import Path

import google.auth
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import ConfigError, TargetError, describe
from target_bigquery_lite.gcs_archive import MAX_OBJECT_NAME_BYTES, gs_uri, object_name

UPLOAD_CHUNK_SIZE = 8 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require
CONTENT_TYPE = "application/x-ndjson"
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
TIMEOUT_SECONDS = 120.0

log = logging.getLogger("target_bigquery_lite")


class CloudStorageError(TargetError):
    """An object could not be uploaded, listed or read."""


def make_storage_client(settings: Settings) -> storage.Client:
    """A Cloud Storage client: `gcs_endpoint` (an emulator, anonymous), or real credentials.

    Raises:
        ConfigError: when credentials cannot be loaded or found.
    """
    options = ClientOptions(api_endpoint=settings.gcs_endpoint) if settings.gcs_endpoint else None
    return storage.Client(
        project=settings.project, credentials=_credentials(settings), client_options=options
    )


def _credentials(settings: Settings) -> Credentials:
    if settings.credentials_path:
        try:
            credentials, _ = google.auth.load_credentials_from_file(
                settings.credentials_path, scopes=SCOPES
            )
        except (GoogleAuthError, ValueError, OSError) as exc:
            raise ConfigError(
                f"cannot load credentials from {settings.credentials_path}: {exc}"
            ) from None
        return credentials
    if settings.gcs_endpoint or os.environ.get(EMULATOR_ENV):
        return AnonymousCredentials()
    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise ConfigError(
            "no Cloud Storage credentials: set credentials_path, or configure Application "
            f"Default Credentials (gcloud auth application-default login). {exc}"
        ) from None
    return credentials


class GcsStaging:
    """One run's objects, owned by the committer thread: upload before load, delete after."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        """Stage in `settings.gcs_bucket` under `settings.gcs_prefix`; connect on first use."""
        assert settings.gcs_bucket is not None
        self.settings = settings
        self.bucket_name = settings.gcs_bucket
        self.run_id = run_id
        self._client: storage.Client | None = None
        self._days: dict[int, date] = {}
        self._objects: dict[int, list[str]] = {}

    def upload(self, batch: int, table: str, path: Path, metadata: dict[str, str]) -> list[str]:
        """Upload `table`'s staging file of batch `batch`; return the `gs://` URIs to load.

        Raises:
            CloudStorageError: naming the file and the object, when the upload fails.
        """
        day = self._days.setdefault(batch, datetime.now(UTC).date())
        name = object_name(
            self.settings.gcs_prefix, table, day, run_id=self.run_id, batch=batch, part=1
        )
        uri = gs_uri(self.bucket_name, name)
        if len(name.encode()) > MAX_OBJECT_NAME_BYTES:
            raise CloudStorageError(
                f"object name {uri} is longer than {MAX_OBJECT_NAME_BYTES} bytes; "
                "shorten gcs_prefix or table_prefix"
            )
        blob = self._bucket().blob(name, chunk_size=UPLOAD_CHUNK_SIZE)
        blob.metadata = metadata
        try:
            blob.upload_from_filename(
                str(path),
                content_type=CONTENT_TYPE,
                if_generation_match=0,
                retry=DEFAULT_RETRY,
                timeout=TIMEOUT_SECONDS,
            )
        except api_exceptions.PreconditionFailed:
            self._check_arrived(blob, path, uri)
        except Exception as exc:
            raise CloudStorageError(
                f"cannot upload staging file {path} to {uri}: {describe(exc)}"
            ) from None
        self._objects.setdefault(batch, []).append(name)
        return [uri]

    def committed(self, batch: int) -> None:
        """Batch `batch` is committed: delete its objects, unless they are kept as an archive."""
        names = self._objects.pop(batch, [])
        self._days.pop(batch, None)
        if self.settings.gcs_keep_objects:
            return
        bucket = self._bucket()
        for name in names:
            try:
                bucket.blob(name).delete(retry=DEFAULT_RETRY, timeout=TIMEOUT_SECONDS)
            except api_exceptions.NotFound:
                continue
            except Exception as exc:  # committed already: the object is only left over
                log.warning(
                    "could not delete %s after its batch was committed (a lifecycle rule "
                    "can expire it): %s",
                    gs_uri(self.bucket_name, name),
                    describe(exc),
                )

    def check_bucket(self) -> None:
        """Fail fast, before any batch is staged, when the bucket is missing or unreadable.

        Lists at most one object (what Storage Object Viewer allows; reading the bucket's
        own metadata would need more). Runs in the main thread, with a client of its own.

        Raises:
            ConfigError: for a missing bucket or missing permissions.
            CloudStorageError: when Cloud Storage cannot be reached.
        """
        client = make_storage_client(self.settings)
        try:
            list(
                client.list_blobs(self.bucket_name, prefix=self.settings.gcs_prefix, max_results=1)
            )
        except api_exceptions.NotFound:
            raise ConfigError(f"config: gcs_bucket '{self.bucket_name}' does not exist") from None
        except api_exceptions.Forbidden as exc:
            raise ConfigError(
                f"config: no permission to list objects in gs://{self.bucket_name} (grant "
                f"Storage Object Viewer and Storage Object Creator on it): {describe(exc)}"
            ) from None
        except Exception as exc:
            raise CloudStorageError(f"cannot reach Cloud Storage: {describe(exc)}") from None
        finally:
            client.close()

    def pending(self) -> list[str]:
        """URIs of objects whose batch is not committed (what a failed run leaves)."""
        return [gs_uri(self.bucket_name, n) for names in self._objects.values() for n in names]

    def _bucket(self) -> storage.Bucket:
        if self._client is None:
            self._client = make_storage_client(self.settings)
        return self._client.bucket(self.bucket_name)

    @staticmethod
    def _check_arrived(blob: storage.Blob, path: Path, uri: str) -> None:
        """The object exists already: an earlier try of this upload must have arrived."""
        try:
            blob.reload(retry=DEFAULT_RETRY, timeout=TIMEOUT_SECONDS)
        except Exception as exc:
            raise CloudStorageError(f"cannot read back {uri}: {describe(exc)}") from None
        expected = path.stat().st_size
        if blob.size != expected:
            raise CloudStorageError(
                f"{uri} exists with {blob.size} bytes, not the {expected} of {path}; "
                "another process writes objects under this run's names"
            )
