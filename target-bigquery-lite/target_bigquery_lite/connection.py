"""Build the BigQuery client from the settings: real BigQuery or a local emulator.

Real BigQuery: `credentials_path` (service account or authorized-user JSON) or Application
Default Credentials. An emulator (`api_endpoint`, or the client's own
`BIGQUERY_EMULATOR_HOST`) gets anonymous credentials, so no Google account is needed.
"""

from __future__ import annotations

import os

import google.auth
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
from google.cloud import bigquery

from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import ConfigError

SCOPES = ("https://www.googleapis.com/auth/bigquery",)
EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"


def uses_emulator(settings: Settings) -> bool:
    """Whether the endpoint is an emulator (which, unlike BigQuery, rejects gzip uploads)."""
    return bool(settings.api_endpoint or os.environ.get(EMULATOR_ENV))


def make_client(settings: Settings, location: str | None = None) -> bigquery.Client:
    """A client for the configured project, endpoint and credentials.

    Jobs are created and looked up in `location` (the dataset's), else `settings.location`.

    Raises:
        ConfigError: when credentials cannot be loaded or found.
    """
    options = ClientOptions(api_endpoint=settings.api_endpoint) if settings.api_endpoint else None
    return bigquery.Client(
        project=settings.project,
        credentials=_credentials(settings),
        location=location or settings.location,
        client_options=options,
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
    if uses_emulator(settings):
        return AnonymousCredentials()
    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise ConfigError(
            "no BigQuery credentials: set credentials_path, or configure Application Default "
            f"Credentials (gcloud auth application-default login). {exc}"
        ) from None
    return credentials
