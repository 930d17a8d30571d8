"""Read the Meltano project's pipelines (jobs, their tasks, schedules) from meltano.yml.

The Dagster definitions are built from this, so a job, tenant or schedule added to
meltano.yml appears in Dagster without being repeated in Python.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

STATE_ID_TAG = "meltano/state_id"
"""Run tag holding the Meltano state id(s) a run writes; at most one run per value at a time."""


class ProjectError(ValueError):
    """meltano.yml is missing or describes something this code location cannot run."""


@dataclass(frozen=True)
class Task:
    """One `tap [mapper ...] target` block of a Meltano job."""

    plugins: tuple[str, ...]

    @property
    def extractor(self) -> str:
        """The first plugin: the tap."""
        return self.plugins[0]

    @property
    def loader(self) -> str:
        """The last plugin: the target."""
        return self.plugins[-1]

    def state_id(self, environment: str) -> str:
        """Meltano's state id for this pair: `<env>:<tap>-to-<target>`."""
        return f"{environment}:{self.extractor}-to-{self.loader}"


@dataclass(frozen=True)
class MeltanoJob:
    """A named job of meltano.yml and its tasks."""

    name: str
    tasks: tuple[Task, ...]

    @property
    def dagster_name(self) -> str:
        """The job's name as Dagster allows it (letters, digits, underscores)."""
        return dagster_name(self.name)

    def state_ids(self, environment: str) -> tuple[str, ...]:
        """Every state id the job's runs write."""
        return tuple(task.state_id(environment) for task in self.tasks)


@dataclass(frozen=True)
class MeltanoSchedule:
    """A job schedule of meltano.yml: a cron interval for one job."""

    name: str
    cron: str
    job: str


@dataclass(frozen=True)
class MeltanoProject:
    """What the Dagster definitions need from a Meltano project."""

    root: Path
    environment: str
    jobs: tuple[MeltanoJob, ...]
    schedules: tuple[MeltanoSchedule, ...]
    executables: dict[str, str]
    """Plugin name -> the program it runs (its `executable`, else its parent's, else its name)."""

    def job(self, name: str) -> MeltanoJob:
        """The job called `name` (Meltano's or Dagster's spelling)."""
        for job in self.jobs:
            if name in {job.name, job.dagster_name}:
                return job
        known = ", ".join(job.name for job in self.jobs)
        raise ProjectError(f"meltano.yml has no job {name!r} (jobs: {known})")


def dagster_name(name: str) -> str:
    """`flows-to-bigquery` -> `flows_to_bigquery`: Dagster names allow only [A-Za-z0-9_]."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def find_root(start: Path | None = None) -> Path:
    """The Meltano project folder: $MELTANO_PROJECT_ROOT, else the nearest meltano.yml upwards.

    Searched from `start` (default: the working directory), then from this package's own
    folder, which sits inside the project it was installed from.
    """
    if os.environ.get("MELTANO_PROJECT_ROOT"):
        return Path(os.environ["MELTANO_PROJECT_ROOT"]).resolve()
    for origin in (start or Path.cwd(), Path(__file__).resolve().parent):
        for folder in (origin.resolve(), *origin.resolve().parents):
            if (folder / "meltano.yml").is_file():
                return folder
    raise ProjectError("no meltano.yml found; set MELTANO_PROJECT_ROOT to the Meltano project")


def parse_task(task: str | list[str], job: str) -> Task:
    """A task is `"tap target"` or a list of plugin names; it must end in a loader."""
    plugins = tuple(task.split() if isinstance(task, str) else task)
    if len(plugins) < 2:
        raise ProjectError(f"job {job!r}: task {task!r} needs an extractor and a loader")
    return Task(plugins)


def load_project(root: Path | None = None) -> MeltanoProject:
    """Read meltano.yml; the environment is $MELTANO_ENVIRONMENT, else the project's default."""
    root = root or find_root()
    try:
        spec = yaml.safe_load((root / "meltano.yml").read_text())
    except FileNotFoundError as exc:
        raise ProjectError(f"{root / 'meltano.yml'} does not exist") from exc
    environment = os.environ.get("MELTANO_ENVIRONMENT") or spec.get("default_environment")
    if not environment:
        raise ProjectError("set MELTANO_ENVIRONMENT: meltano.yml has no default_environment")
    jobs = tuple(
        MeltanoJob(job["name"], tuple(parse_task(task, job["name"]) for task in job["tasks"]))
        for job in spec.get("jobs") or ()
    )
    job_names = {job.name for job in jobs}
    schedules = []
    for schedule in spec.get("schedules") or ():
        if schedule.get("job") not in job_names:
            raise ProjectError(
                f"schedule {schedule['name']!r}: only job schedules are supported, and "
                f"{schedule.get('job')!r} is not a job of meltano.yml"
            )
        schedules.append(MeltanoSchedule(schedule["name"], schedule["interval"], schedule["job"]))
    return MeltanoProject(root, environment, jobs, tuple(schedules), plugin_executables(spec))


def plugin_executables(spec: dict) -> dict[str, str]:
    """Every extractor's and loader's executable, following `inherit_from`."""
    plugins = {
        plugin["name"]: plugin
        for kind in ("extractors", "loaders")
        for plugin in (spec.get("plugins") or {}).get(kind) or ()
    }

    def executable(name: str, seen: frozenset[str] = frozenset()) -> str:
        plugin = plugins.get(name, {})
        if plugin.get("executable"):
            return plugin["executable"]
        parent = plugin.get("inherit_from")
        if parent and parent not in seen:
            return executable(parent, seen | {name})
        return name

    return {name: executable(name) for name in plugins}
