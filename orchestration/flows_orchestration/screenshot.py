"""Capture the backfill job's partitions page of the Dagster UI with headless Chromium.

Chromium is Debian's `chromium` package (`apt-get install chromium`); only `make
ui-screenshot` needs it, never the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from flows_orchestration.backfill_jobs import backfill_job_name
from flows_orchestration.graphql import LOCATION
from flows_orchestration.launch import backfill_source, dagster_at, dagster_url
from flows_orchestration.project import load_project

WINDOW = "1400,900"
RENDER_MILLISECONDS = 20000


class ScreenshotError(RuntimeError):
    """Chromium is missing or did not write the picture."""


def chromium() -> str:
    """Debian's Chromium executable."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise ScreenshotError("chromium is not installed: apt-get install -y chromium")


def take_screenshot(out: Path, job: str | None = None, url: str | None = None) -> Path:
    """Write a PNG of `<url>/locations/flows/jobs/<backfill job>/partitions` to `out`.

    Uses the Dagster at `url` (default: `make orchestrate`'s), or starts one on the
    project's instance for the length of the capture.
    """
    name = backfill_job_name(backfill_source(load_project(), job))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    browser = chromium()
    with dagster_at(url or dagster_url()) as client, tempfile.TemporaryDirectory() as profile:
        page = f"{client.url}/locations/{LOCATION}/jobs/{name}/partitions"
        client.query("mutation { setNuxSeen }")  # no "join the community" dialog on top
        done = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW}",
                f"--virtual-time-budget={RENDER_MILLISECONDS}",
                f"--screenshot={out.resolve()}",
                page,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    if not out.exists():
        raise ScreenshotError(
            f"chromium wrote no {out} (exit {done.returncode}): {done.stderr[-500:]}"
        )
    print(f"wrote {out} ({page})")
    return out
