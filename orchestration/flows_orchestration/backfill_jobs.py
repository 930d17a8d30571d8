"""A partitioned backfill job per Meltano job: each partition a time range, one pipe each.

The partitions are dynamic: `flows-orchestration backfill` plans the ranges once and stores
them in the instance (plan.py), then launches them as one Dagster backfill. Each partition's
run resolves the tap's and target's configs through Meltano (so environments, env vars and
secrets apply as in `meltano run`), runs `tap | target` over its range (pipe.py) and saves
its state after every commit. A failed or killed pipe is retried by Dagster (the op's retry
policy), alone, from its own last commit; a config error (target exit 2) is not retried.
Runs hold a slot of the `flows_backfill` pool, whose limit is the backfill's concurrency,
and carry their own state id tag, so a partition never runs twice at once.
"""

import time

import dagster as dg

from flows_orchestration.instance import BACKFILL_POOL, backfill_state_dir
from flows_orchestration.meltano import plugin_configs
from flows_orchestration.meltano_jobs import last_lines, retry_policy
from flows_orchestration.pipe import PartitionPipe, PipeEnds
from flows_orchestration.plan import TimeRange
from flows_orchestration.project import STATE_ID_TAG, MeltanoJob, MeltanoProject, Task

CONFIG_ERROR_EXIT = 2


def backfill_job_name(job: MeltanoJob) -> str:
    """`flows_to_bigquery_backfill`."""
    return f"{job.dagster_name}_backfill"


def partition_state_id(task: Task, environment: str, key: str) -> str:
    """The partition's own state id, as `meltano run --state-id-suffix backfill-<key>` names it."""
    return f"{task.state_id(environment)}:backfill-{key}"


def backfill_job(project: MeltanoProject, job: MeltanoJob) -> dg.JobDefinition:
    """The partitioned backfill of a one-task Meltano job."""
    (task,) = job.tasks
    name = backfill_job_name(job)
    partitions = dg.DynamicPartitionsDefinition(name=name)

    @dg.op(
        name=f"load_{job.dagster_name}_range",
        description=f"{task.extractor} | {task.loader} over the partition's time range",
        retry_policy=retry_policy(),
        pool=BACKFILL_POOL,
    )
    def load_range(context: dg.OpExecutionContext) -> None:
        span = TimeRange.from_key(context.partition_key)
        pipe = PartitionPipe(backfill_state_dir(name), span)
        saved = pipe.saved_state()
        context.log.info(
            f"[{span.start}, {span.end}): "
            + ("resuming from its saved state" if saved else "from the start")
            + f" ({pipe.state_path})"
        )
        tap, target = plugin_configs(project, task.extractor, task.loader)
        ends = PipeEnds(
            project.executables[task.extractor], tap, project.executables[task.loader], target
        )
        started = time.monotonic()
        outcome = pipe.run(ends, context.log.info)
        if not outcome.ok:
            raise dg.Failure(
                description=(
                    f"[{span.start}, {span.end}): {task.extractor} exited {outcome.tap_code}, "
                    f"{task.loader} exited {outcome.target_code}; its state is kept, a retry "
                    "resumes from the last commit"
                ),
                metadata={"last lines": last_lines(outcome.tail)},
                allow_retries=outcome.target_code != CONFIG_ERROR_EXIT,
            )
        context.add_output_metadata(
            {
                "rows committed": sum(outcome.rows.values()),
                "bookmark": str(outcome.bookmark),
                "state file": str(pipe.state_path),
                "seconds": round(time.monotonic() - started, 1),
            }
        )

    @dg.job(
        name=name,
        description=f"backfill of {job.name} ({task.extractor} | {task.loader}) by time range",
        partitions_def=partitions,
        executor_def=dg.in_process_executor,
        config=dg.PartitionedConfig(
            partitions_def=partitions,
            run_config_for_partition_key_fn=lambda _key: {},
            tags_for_partition_key_fn=lambda key: {
                STATE_ID_TAG: partition_state_id(task, project.environment, key)
            },
        ),
    )
    def the_job() -> None:
        load_range()

    return the_job
