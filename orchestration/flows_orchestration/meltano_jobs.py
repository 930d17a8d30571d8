"""One Dagster job per Meltano job (`meltano run <job>`), and Meltano's schedules.

Each run streams Meltano's output into Dagster's log, records the rows the target
committed and the bookmark Meltano saved as metadata, and is retried when it fails (the tap
and the target already retry transient errors themselves; this outer retry covers what
outlasts them, such as a service down for minutes). Runs carry their state ids in the
`meltano/state_id` tag: the run queue starts at most one run per state id (instance.py).
"""

import os
import time

import dagster as dg

from flows_orchestration.meltano import run_job, saved_bookmark
from flows_orchestration.project import STATE_ID_TAG, MeltanoJob, MeltanoProject, dagster_name


def retry_policy() -> dg.RetryPolicy:
    """Backoff: $FLOWS_RETRIES retries (default 2), the first after $FLOWS_RETRY_DELAY s (30)."""
    return dg.RetryPolicy(
        max_retries=int(os.environ.get("FLOWS_RETRIES", "2")),
        delay=float(os.environ.get("FLOWS_RETRY_DELAY", "30")),
        backoff=dg.Backoff.EXPONENTIAL,
    )


def last_lines(lines: list[str]) -> dg.MetadataValue:
    """A run's last output lines as a code block, for the failure's metadata."""
    return dg.MetadataValue.md("```\n" + "\n".join(lines) + "\n```")


def state_id_tag(state_ids: tuple[str, ...]) -> dict[str, str]:
    """The concurrency tag of a run writing `state_ids` (a job's tasks, usually one)."""
    return {STATE_ID_TAG: ",".join(sorted(state_ids))}


class MeltanoRunConfig(dg.Config):
    """Options of one `meltano run`."""

    full_refresh: bool = False
    """Ignore the saved state and load everything again (`meltano run --full-refresh`)."""


def meltano_job(project: MeltanoProject, job: MeltanoJob) -> dg.JobDefinition:
    """The Dagster job that runs the Meltano job `job`."""
    state_ids = job.state_ids(project.environment)

    @dg.op(
        name=f"meltano_run_{job.dagster_name}",
        description=f"meltano run {job.name}",
        retry_policy=retry_policy(),
    )
    def meltano_run(context: dg.OpExecutionContext, config: MeltanoRunConfig) -> None:
        started = time.monotonic()
        outcome = run_job(project, job.name, context.log.info, full_refresh=config.full_refresh)
        if outcome.code != 0:
            raise dg.Failure(
                description=f"meltano run {job.name} exited with code {outcome.code}",
                metadata={"last lines": last_lines(outcome.tail)},
            )
        metadata: dict[str, dg.RawMetadataValue] = {
            "rows committed": sum(outcome.rows.values()),
            "seconds": round(time.monotonic() - started, 1),
        }
        for state_id in state_ids:
            metadata[f"bookmark {state_id}"] = str(saved_bookmark(project, state_id))
        context.add_output_metadata(metadata)

    @dg.job(
        name=job.dagster_name,
        description=f"meltano run {job.name} ({', '.join(state_ids)})",
        tags=state_id_tag(state_ids),
        executor_def=dg.in_process_executor,
    )
    def the_job() -> None:
        meltano_run()

    return the_job


def meltano_schedules(
    project: MeltanoProject, jobs: dict[str, dg.JobDefinition]
) -> list[dg.ScheduleDefinition]:
    """Meltano's job schedules, stopped until turned on (in the UI or `dagster schedule start`)."""
    return [
        dg.ScheduleDefinition(
            name=dagster_name(schedule.name),
            cron_schedule=schedule.cron,
            job=jobs[schedule.job],
            description=f"meltano.yml schedule {schedule.name}: {schedule.cron}",
            default_status=dg.DefaultScheduleStatus.STOPPED,
        )
        for schedule in project.schedules
    ]
