"""The code location: every Meltano job, its backfill, and Meltano's schedules, from meltano.yml.

dagster dev -w orchestration/workspace.yaml     # or: make orchestrate
"""

from __future__ import annotations

import dagster as dg

from flows_orchestration.backfill_jobs import backfill_job
from flows_orchestration.meltano_jobs import meltano_job, meltano_schedules
from flows_orchestration.project import MeltanoProject, load_project


def build_definitions(project: MeltanoProject) -> dg.Definitions:
    """Jobs, backfill jobs (for one-task jobs) and schedules of `project`."""
    jobs = {job.name: meltano_job(project, job) for job in project.jobs}
    backfills = [backfill_job(project, job) for job in project.jobs if len(job.tasks) == 1]
    return dg.Definitions(
        jobs=[*jobs.values(), *backfills],
        schedules=meltano_schedules(project, jobs),
    )


defs = build_definitions(load_project())
