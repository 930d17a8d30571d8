"""The kill-loop's Cloud Storage lanes: their moments, where each is held, the archive check.

A GCS lane is a pipe lane whose target stages its batches in a bucket (`CloudStaging`):
`gcs` keeps every object (`gcs_keep_objects: true`), `gcs-delete` deletes them once their
batch is committed. Besides the moments every lane has, its kills land

* while a batch's upload is held at a proxy in front of fake-gcs-server (the object never
  arrives), and
* after the upload, while the batch's load job is held at the BigQuery proxy (the objects
  are in the bucket and stay there, never committed; a rerun must not load them), and, for
  `gcs-delete`, after the commit and its STATE while the objects' delete is held.

(Its load job reads `gs://` URIs, so the other lanes' `load-held`, an upload to BigQuery,
never comes.) After every kill in a `gcs` lane, `Archive.check` asks whether every row in
the table is in some archived object: a committed batch's objects are never lost.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson
from google.api_core.exceptions import NotFound
from google.cloud import bigquery, storage

from tests.reliability.pipeline import BIN, PROJECT, RUN_TIMEOUT, CloudStaging, Lane, Sizes

GCS_MODES = {"gcs": True, "gcs-delete": False}  # lane name -> gcs_keep_objects
GCS_MOMENTS = {
    "upload-held": "while batch b's upload is held before it reaches the bucket",
    "uploaded-held": "batch b's objects in the bucket, its load job held before BigQuery",
    "delete-held": "batch b committed, its STATE out, the delete of its objects held",
}
# service, method, path regex, body regex (with the batch number) of the request held
GCS_HOLDS = {
    "upload-held": ("storage", "POST", r"/upload/storage/v1/b/", r"-{batch:06d}-1\.jsonl"),
    "uploaded-held": ("bigquery", "POST", r"/jobs", r"_{batch:06d}_flows_[0-9a-f]{{16}}_load_"),
    "delete-held": ("storage", "DELETE", r"-{batch:06d}-1\.jsonl", None),
}


def make_gcs_lane(workdir: Path, mode: str, sizes: Sizes, tag: str) -> Lane:
    """A pipe lane staging in a bucket of its own (`mode`: `gcs` or `gcs-delete`)."""
    staging = CloudStaging(f"kill-{mode}-{tag}", keep_objects=GCS_MODES[mode])
    dataset = f"kill_{mode.replace('-', '_')}_{tag}"
    return Lane("pipe", workdir / mode, dataset, sizes, name=mode, gcs=staging)


def lane_moments(lane: Lane, moments: list[str]) -> list[str]:
    """The moments a lane can be killed at, from the plain lanes' `moments`."""
    if lane.gcs is None:
        return list(moments)
    extra = [m for m in GCS_MOMENTS if m != "delete-held" or not lane.gcs.keep_objects]
    return [m for m in moments if m != "load-held"] + extra


@dataclass(frozen=True)
class ArchiveCheck:
    """The table's ids against the ids in the lane's archived objects."""

    table_ids: int
    archived_ids: int
    missing: int
    objects: int

    def describe(self) -> str:
        """One line for logs and failure messages."""
        return (
            f"{self.missing} of the table's {self.table_ids} ids in none of the "
            f"{self.objects} archived objects ({self.archived_ids} ids)"
        )


class Archive:
    """The ids in a lane's archived objects, each object read once (objects never change)."""

    def __init__(self, store: storage.Client, staging: CloudStaging, table: str = "flows") -> None:
        """Read `table`'s objects of the lane's bucket through `store`."""
        self.store = store
        self.staging = staging
        self.prefix = f"{staging.prefix}{table}/dt="
        self._ids: dict[str, frozenset[int]] = {}

    def ids(self) -> tuple[set[int], int]:
        """Every id in the objects there now, and how many objects there are."""
        ids: set[int] = set()
        names = 0
        for blob in self.store.list_blobs(self.staging.bucket, prefix=self.prefix):
            names += 1
            if blob.name not in self._ids:
                lines = blob.download_as_bytes().splitlines()
                self._ids[blob.name] = frozenset(orjson.loads(line)["id"] for line in lines)
            ids |= self._ids[blob.name]
        return ids, names

    def check(self, client: bigquery.Client, lane: Lane) -> ArchiveCheck:
        """Whether every row committed to the lane's table is in the archive."""
        archive, objects = self.ids()
        try:
            client.get_table(lane.table)
        except NotFound:  # the first run died before the target created it
            table: set[int] = set()
        else:
            table = {row[0] for row in client.query(f"SELECT id FROM `{lane.table}`").result()}
        return ArchiveCheck(len(table), len(archive), len(table - archive), objects)


def loads_of_other_runs(client: bigquery.Client, lane: Lane) -> list[str]:
    """Load jobs of the lane that read an object another run uploaded (a rerun loading a
    killed run's leftovers); each job id holds its run id, each object name its own.
    """
    wrong = []
    for job in client.list_jobs(all_users=True):
        if job.job_type != "load" or job.destination.dataset_id != lane.dataset:
            continue
        for uri in job.source_uris:
            run_id = uri.rsplit("/", 1)[1].rsplit("-", 2)[0]
            if run_id not in job.job_id:
                wrong.append(f"{job.job_id} loaded {uri}")
    return wrong


def rebuild_into(lane: Lane, bq_url: str, gcs_url: str, into: str) -> subprocess.CompletedProcess:
    """`target-bigquery-lite rebuild` of the lane's table from its archive into `into`."""
    assert lane.gcs is not None
    config = lane.workdir / "rebuild.json"
    config.write_text(
        json.dumps(
            {"project": PROJECT, "dataset": lane.dataset, "api_endpoint": bq_url}
            | lane.gcs.target_settings(gcs_url)
        )
    )
    command = [str(BIN / "target-bigquery-lite"), "rebuild", "--config", str(config)]
    return subprocess.run(
        [*command, "--table", "flows", "--into", into],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
