"""The Dagster instance of this project: where it lives and the dagster.yaml it runs with.

The run queue is what keeps pipelines from failing each other: at most one run per Meltano
state id is in progress (two `meltano run`s of one pair share `.meltano/run/<plugin>/` and
its state), so a schedule tick that arrives while the previous run still goes waits in the
queue. Backfill runs go through the `flows_backfill` pool, whose limit is the backfill's
concurrency; with run granularity a run waits in the queue for a slot instead of starting
and then blocking.
"""

from __future__ import annotations

import os
from pathlib import Path

from flows_orchestration.project import STATE_ID_TAG, find_root

BACKFILL_POOL = "flows_backfill"
WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"

DAGSTER_YAML = f"""\
# Written by flows_orchestration (instance.py); edits are replaced on the next start.
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
concurrency:
  runs:
    tag_concurrency_limits:
      - key: "{STATE_ID_TAG}"
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    granularity: run
run_retries:
  enabled: true
  max_retries: 1
  retry_on_asset_or_op_failure: false
"""


def dagster_home() -> Path:
    """$DAGSTER_HOME, else `.run/dagster` in the project."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).resolve()
    return find_root() / ".run" / "dagster"


def ensure_instance(home: Path | None = None) -> Path:
    """Create the instance folder with this project's dagster.yaml; return the folder."""
    home = home or dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() != DAGSTER_YAML:
        config.write_text(DAGSTER_YAML)
    return home


def backfill_state_dir(job: str) -> Path:
    """Where a backfill job keeps its partitions' state files: $FLOWS_BACKFILL_STATE_DIR/<job>.

    Default `.run/backfill/<job>` in the project. Every worker that runs partitions must
    see the same folder (on one machine it is local; on several, a shared mount).
    """
    base = os.environ.get("FLOWS_BACKFILL_STATE_DIR")
    return (Path(base) if base else find_root() / ".run" / "backfill") / job
