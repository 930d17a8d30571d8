"""The kill-loop: SIGKILL the pipeline at seeded random moments and prove nothing is lost.

Rounds alternate between lanes (`scripts/run-pipe.sh`, `meltano run`, and pipe lanes whose
target stages in Cloud Storage, see `gcs_lane.py`; each with its own dataset and saved
state). In a round, 2 to 4 runs are killed, each at one moment of `MOMENTS` (GCS lanes:
`gcs_lane.GCS_MOMENTS` too), the victim being the tap, the target or both (SIGKILL, by
PID). After every kill each saved state is checked against the table
(`pipeline.check_state`): not past `max(time)`, and no source row with `time < bookmark`
missing; in a GCS lane that keeps its objects, every row in the table must also be in the
archive (`gcs_lane.Archive.check`). Then the lane re-runs without faults until a run
succeeds, and the table must equal the source exactly (count, distinct ids, sum of
byte_count, all ten columns of sampled ids, ids at every bookmark seen among them).
Between rounds the source grows: a few late rows at the newest `time` already
extracted (only an inclusive restart picks them up), then appended ones.

The `dedup_view` lane is a pipe lane whose target uses `load_method: dedup_view`: its table
is the view `flows` over `flows_raw`, so every check reads the view. It merges nothing, so
instead of `merge-held` and `after-merge` it is killed `after-load`: the batch's load into
`flows_raw` committed, its answer held, the STATE after it not yet out. The rerun appends
those rows again, and the view must still show each source row once.

Runs go through loopback proxies, which is how moments are found rather than guessed:
a pass-through `FaultProxy` counts the tap's page requests, and a `BigQueryProxy` holds the
target's load job, MERGE or staging-table drop of a chosen batch (GCS lanes: another one in
front of fake-gcs-server holds an upload or a delete). A held request of a killed target is
dropped, as if it never left the machine.

The plan (lane, victim, moment, position) comes from one seed, printed first; the same seed
gives the same plan (timings differ from run to run, so where exactly a `random` kill lands
does too). `make test` runs a short loop (tests/reliability/test_kill_loop.py);
`make reliability KILLS=200` runs a long one through this module's command line:

    .venv/bin/python -m tests.reliability.kill_loop --kills 200 [--seed N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dev_services.bigquery_emulator import emulator_client
from dev_services.bigquery_proxy import BigQueryProxy, Rule
from dev_services.fault_proxy import FaultProxy
from dev_services.flows_api import start_flows_api
from dev_services.gcs_server import (
    delete_bucket,
    ensure_bucket,
    start_gcs_server,
    storage_client,
)
from dev_services.strict_bigquery import start_strict_bigquery
from google.cloud import bigquery, storage

from tests.reliability.gcs_lane import (
    GCS_HOLDS,
    GCS_MODES,
    Archive,
    lane_moments,
    make_gcs_lane,
)
from tests.reliability.pipeline import (
    BIN,
    Lane,
    Sizes,
    StateCheck,
    Verdict,
    bookmark_of,
    check_state,
    grow_source,
    kill,
    pipeline_processes,
    rows_from,
    sample_ids,
    verify_exact,
    wait_for_exit,
    wait_until,
)

MOMENTS = {
    "early": "as soon as the victim runs, plus up to 0.5 s (start-up, first request)",
    "random": "a random time within 60% of the lane's last clean run, once the victim runs",
    "tap-page": "when the tap asks for page k (pages before it emitted, with their STATEs)",
    "load-held": "while batch b's load job is held before it reaches BigQuery",
    "merge-held": "while batch b's MERGE is held: loaded into staging, not committed",
    "after-merge": "after batch b's MERGE committed, before the STATE that follows it",
}
# method, path regex, body regex (with the batch number) of the request held for a moment
HOLDS = {
    "load-held": ("POST", r"/upload/", r"_{batch:06d}_flows_[0-9a-f]{{16}}_load_"),
    "merge-held": ("POST", r"/jobs", r"_{batch:06d}_flows_[0-9a-f]{{16}}_merge_"),
    "after-merge": ("DELETE", r"/tables/_bqlite_stage_\w+_{batch:06d}_flows", None),
}
DEDUP_MOMENTS = {
    "after-load": "batch b loaded into flows_raw, the load's answer held: before its STATE",
}
# The dedup_view lane's holds: its load jobs go to flows_raw, and the upload that completes
# a batch's load (its b-th PUT: one stream, one chunk a batch) is answered only when released.
DEDUP_HOLDS = {
    "load-held": ("bigquery", "POST", r"/upload/", r"_{batch:06d}_flows_raw_[0-9a-f]{{16}}_load_"),
    "after-load": ("bigquery", "PUT", r"/upload/.*upload_id=", None),
}
DEDUP_LANE = "dedup_view"
ALL_HOLDS = (
    {m: ("bigquery", *hold) for m, hold in HOLDS.items()}
    | GCS_HOLDS
    | {"after-load": DEDUP_HOLDS["after-load"]}
)
VICTIMS = ("tap", "target", "both")
MOMENT_TIMEOUT = 180.0
RANDOM_SHARE = 0.6  # of a clean run's duration: the part where tap and target both run
DEFAULT_RUN_SECONDS = {"pipe": 4.0, "meltano": 8.0}


@dataclass(frozen=True)
class KillSpec:
    """One planned kill: where in the run (`position` in [0, 1) of the moment's range) and whom."""

    number: int
    lane: str
    victim: str
    moment: str
    position: float


@dataclass
class Summary:
    """What a loop did and found; `ok` is the verdict."""

    seed: int
    kills: Counter[tuple[str, str]] = field(default_factory=Counter)
    kills_by_lane: Counter[str] = field(default_factory=Counter)
    not_reached: int = 0
    runs: int = 0
    reruns: int = 0
    rounds: int = 0
    state_checks: int = 0
    states_ahead: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    hangs: int = 0
    archive_checks: int = 0
    archive_missing: int = 0
    failed_clean_runs: int = 0
    source_rows: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def total_kills(self) -> int:
        """Runs that really lost a process to SIGKILL."""
        return sum(self.kills.values())

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated or changed, no state ahead, no hang, every rerun succeeded."""
        return not self.problems

    def report(self) -> str:
        """The summary printed at the end of a loop (and kept in docs/RELIABILITY.md)."""
        moments = sorted({moment for _, moment in self.kills})
        archive = (
            f", archived rows missing: {self.archive_missing} ({self.archive_checks} checks)"
            if self.archive_checks
            else ""
        )
        width = max((len(m) for m in moments), default=6)
        lines = [
            f"kill-loop seed {self.seed}: {self.total_kills} kills in {self.rounds} rounds, "
            f"{self.runs} runs, {self.seconds / 60:.1f} min, source {self.source_rows:,} rows",
            f"  {'moment':<{width}}  {'tap':>5} {'target':>6} {'both':>5}",
        ]
        for moment in moments:
            counts = [self.kills[(victim, moment)] for victim in VICTIMS]
            lines.append(f"  {moment:<{width}}  {counts[0]:>5} {counts[1]:>6} {counts[2]:>5}")
        lines += [
            f"  by lane: {dict(sorted(self.kills_by_lane.items()))}; moments not reached "
            f"(run ended first): {self.not_reached}",
            f"  reruns to success: {self.reruns} ({self.failed_clean_runs} failed); "
            f"state checks: {self.state_checks}",
            f"  lost: {self.lost}, duplicated: {self.duplicated}, rows differing: "
            f"{self.mismatched}, states ahead: {self.states_ahead}, hangs: {self.hangs}{archive}",
            f"  verdict: {'PASS' if self.ok else 'FAIL'}",
        ]
        lines += [f"  problem: {problem}" for problem in self.problems[:20]]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        """The figures as JSON-friendly values."""
        return {
            "seed": self.seed,
            "kills": self.total_kills,
            "kills_by_victim_moment": {f"{v}/{m}": n for (v, m), n in sorted(self.kills.items())},
            "kills_by_lane": dict(self.kills_by_lane),
            "not_reached": self.not_reached,
            "runs": self.runs,
            "reruns": self.reruns,
            "rounds": self.rounds,
            "state_checks": self.state_checks,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "mismatched": self.mismatched,
            "states_ahead": self.states_ahead,
            "hangs": self.hangs,
            "archive_checks": self.archive_checks,
            "archive_missing": self.archive_missing,
            "failed_clean_runs": self.failed_clean_runs,
            "source_rows": self.source_rows,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
        }


def kill_specs(seed: int, lanes: dict[str, list[str]]) -> Iterator[tuple[int, KillSpec]]:
    """(round, spec) pairs from one seed: rounds alternate lanes and hold 2 to 4 kills.

    `lanes` maps each lane's name to its moments. The first kill of each lane is the
    targeted one: the target, between a MERGE (for the dedup_view lane: a load) and the
    STATE after it. Then each lane draws
    moments from its own shuffled deck, so every moment comes up in every lane within its
    first seven to nine kills; hold moments pick the target as victim more often.
    """
    rng = random.Random(seed)
    names = list(lanes)
    decks: dict[str, list[str]] = {lane: [] for lane in names}
    targeted = set(names)
    number = 0
    for round_no in range(10**9):
        lane = names[round_no % len(names)]
        for _ in range(rng.randint(2, 4)):
            number += 1
            if lane in targeted:
                targeted.discard(lane)
                first = "after-load" if "after-load" in lanes[lane] else "after-merge"
                yield round_no, KillSpec(number, lane, "target", first, rng.random())
                continue
            if not decks[lane]:
                decks[lane] = list(lanes[lane])
                rng.shuffle(decks[lane])
            moment = decks[lane].pop()
            weights = (1, 3, 2) if moment in ALL_HOLDS else (1, 1, 1)
            victim = rng.choices(VICTIMS, weights=weights)[0]
            yield round_no, KillSpec(number, lane, victim, moment, rng.random())
    raise AssertionError("unreachable")  # pragma: no cover


class KillLoop:
    """Runs kill rounds against running services and tallies a `Summary`."""

    def __init__(
        self,
        db: Path,
        api_url: str,
        bq_url: str,
        client: bigquery.Client,
        lanes: list[Lane],
        seed: int,
        *,
        append_rows: int = 6_000,
        gcs_url: str | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        """Prepare a loop; `run` does the work.

        Args:
            db: The flows-api database (the loop appends to it between rounds).
            api_url: flows-api's URL.
            bq_url: The BigQuery emulator's URL.
            client: A client of that emulator, for the checks.
            lanes: The lanes to alternate between (each with its own dataset and state).
            seed: The seed of the plan.
            append_rows: Rows appended to the source after each round.
            gcs_url: fake-gcs-server's URL (needed by lanes staging in Cloud Storage, whose
                buckets are created here).
            say: Where progress lines go.
        """
        self.db = db
        self.api_url = api_url
        self.bq_url = bq_url
        self.client = client
        self.lanes = {lane.name: lane for lane in lanes}
        self.gcs_url = gcs_url
        self.storage: storage.Client | None = None
        self.archives: dict[str, Archive] = {}
        if any(lane.gcs for lane in lanes):
            if gcs_url is None:
                raise ValueError("lanes staging in Cloud Storage need gcs_url")
            self.storage = storage_client(gcs_url)
            for lane in lanes:
                if lane.gcs:
                    ensure_bucket(self.storage, lane.gcs.bucket)
        self.seed = seed
        self.append_rows = append_rows
        self.say = say
        self.rng = random.Random(seed + 1)
        self.run_seconds = {lane.name: DEFAULT_RUN_SECONDS[lane.mode] for lane in lanes}
        self.summary = Summary(seed)

    def run(self, kills: int) -> Summary:
        """Kill runs until `kills` processes-losing kills happened; finish the last round."""
        started = time.monotonic()
        self.say(f"kill-loop seed {self.seed} (KILL_LOOP_SEED={self.seed} repeats the plan)")
        current: int | None = None
        bookmarks: list[int] = []
        plan = {name: moments_of(lane) for name, lane in self.lanes.items()}
        for attempt, (round_no, spec) in enumerate(kill_specs(self.seed, plan)):
            if round_no != current:
                if current is not None:
                    self.finish_round(self.lanes[self._lane_of(current)], bookmarks)
                    bookmarks = []
                    if self.summary.total_kills >= kills or attempt >= 3 * kills:
                        break
                current = round_no
            checks = self.kill_run(self.lanes[spec.lane], spec)
            bookmarks += [check.bookmark for check in checks if check.bookmark is not None]
        self.summary.seconds = time.monotonic() - started
        self.summary.source_rows = rows_from(self.db, None)
        return self.summary

    def _lane_of(self, round_no: int) -> str:
        return list(self.lanes)[round_no % len(self.lanes)]

    def kill_run(self, lane: Lane, spec: KillSpec) -> list[StateCheck]:
        """One run, killed at `spec`'s moment; every saved state checked after it ended.

        When the lane has caught up with nearly all of the source (an earlier kill of the
        round came too late, and that run finished), the source grows first, so that every
        kill has batches and pages to land in.
        """
        remaining = rows_from(self.db, bookmark_of(lane.saved_state()))
        if remaining < 2 * lane.sizes.batch_max_rows:
            late, appended = grow_source(self.db, self.rng, self.append_rows)
            remaining = rows_from(self.db, bookmark_of(lane.saved_state()))
            self.say(f"source +{late} late rows, +{appended} appended (the lane had caught up)")
        pages = max(1, math.ceil(remaining / lane.sizes.page_size))
        batches = max(1, math.ceil(remaining / lane.sizes.batch_max_rows))
        detail, service, rule = self._moment_detail(lane, spec, pages, batches)
        api_proxy = FaultProxy(self.api_url)
        bq_proxy = BigQueryProxy(self.bq_url, [rule] if rule and service == "bigquery" else [])
        gcs_proxy = None
        if lane.gcs is not None:
            assert self.gcs_url is not None
            gcs_proxy = BigQueryProxy(self.gcs_url, [rule] if rule and service == "storage" else [])
        proxies = [p for p in (bq_proxy, gcs_proxy) if p is not None]
        api_proxy.start()
        for proxy in proxies:
            proxy.start()
            quiet_disconnects(proxy)
        killed: list[str] = []
        try:
            run = lane.start(
                api_proxy.url, bq_proxy.url, gcs_url=gcs_proxy.url if gcs_proxy else None
            )
            self.summary.runs += 1
            reached = self._wait_for_moment(run, lane, spec, rule, api_proxy, pages)
            if reached:
                found = pipeline_processes(run)
                wanted = ("tap", "target") if spec.victim == "both" else (spec.victim,)
                killed = kill({name: found[name] for name in wanted if name in found})
            if "target" in killed:
                for proxy in proxies:
                    proxy.stop()  # the held request never reaches BigQuery or the bucket
            elif rule is not None:
                rule.release()
            code = wait_for_exit(run)
        finally:
            for proxy in proxies:
                proxy.stop()
            api_proxy.stop()
        if code is None:
            self.summary.hangs += 1
            self._problem(spec, f"the run did not end (log {lane.log_of_last_run()})")
        if killed:  # counted by who really died: "both" may find the tap already gone
            self.summary.kills[("both" if len(killed) == 2 else killed[0], spec.moment)] += 1
            self.summary.kills_by_lane[lane.name] += 1
            outcome = f"killed {'+'.join(killed)}"
        else:
            self.summary.not_reached += 1
            outcome = "victim had exited (no kill)" if reached else "not reached (no kill)"
            if code != 0:
                self._problem(spec, f"a run nobody killed exited {code} ({lane.log_of_last_run()})")
        return self._check_states(lane, spec, f"{detail}: {outcome}, exit {code}")

    def _moment_detail(
        self, lane: Lane, spec: KillSpec, pages: int, batches: int
    ) -> tuple[str, str | None, Rule | None]:
        """What the moment is, in words, and which proxy holds which request for it."""
        holds = ALL_HOLDS | DEDUP_HOLDS if lane.name == DEDUP_LANE else ALL_HOLDS
        if spec.moment in holds:
            batch = 1 + int(spec.position * batches)
            service, method, path, body = holds[spec.moment]
            after = spec.moment == "after-load"  # the answer of the batch's last upload
            rule = Rule(
                method,
                path.format(batch=batch),
                body.format(batch=batch) if body else None,
                action="hold-answer" if after else "hold",
                skip=batch - 1 if after else 0,
            )
            return f"batch {batch} of {batches}", service, rule
        if spec.moment == "tap-page":
            return f"page {1 + int(spec.position * pages)} of {pages}", None, None
        if spec.moment == "early":
            return f"{spec.position * 0.5:.2f} s after start-up", None, None
        delay = spec.position * RANDOM_SHARE * self.run_seconds[spec.lane]
        return f"{delay:.2f} s after start-up", None, None

    def _wait_for_moment(
        self,
        run: subprocess.Popen[bytes],
        lane: Lane,
        spec: KillSpec,
        rule: Rule | None,
        api_proxy: FaultProxy,
        pages: int,
    ) -> bool:
        """Block until the moment comes (True) or the run ends first (False)."""

        def ended() -> bool:
            return run.poll() is not None

        if spec.moment in ALL_HOLDS:
            assert rule is not None
            wait_until(lambda: rule.matched.is_set() or ended(), MOMENT_TIMEOUT)
            return rule.matched.is_set()
        if spec.moment == "tap-page":
            page = 1 + int(spec.position * pages)
            wait_until(lambda: len(api_proxy.requests) >= page or ended(), MOMENT_TIMEOUT)
            return len(api_proxy.requests) >= page and not ended()
        wanted = ("tap", "target") if spec.victim == "both" else (spec.victim,)

        def running() -> bool:
            return all(name in pipeline_processes(run) for name in wanted)

        if not wait_until(lambda: running() or ended(), MOMENT_TIMEOUT) or ended():
            return False
        span = 0.5 if spec.moment == "early" else RANDOM_SHARE * self.run_seconds[lane.name]
        due = time.monotonic() + spec.position * span
        wait_until(lambda: time.monotonic() >= due or ended(), MOMENT_TIMEOUT)
        return not ended()

    def _check_states(self, lane: Lane, spec: KillSpec, what: str) -> list[StateCheck]:
        checks = []
        for where, state in lane.states_to_check().items():
            check = check_state(self.db, self.client, lane.table, where, state)
            checks.append(check)
            self.summary.state_checks += 1
            if check.ahead:
                self.summary.states_ahead += 1
                self._problem(spec, f"state ahead of the data: {check.describe()}")
            if check.duplicates:
                self.summary.duplicated = max(self.summary.duplicated, check.duplicates)
                self._problem(spec, f"duplicates after the kill: {check.describe()}")
        notes = "; ".join(f"{c.where} {c.bookmark} (max {c.table_max_time})" for c in checks)
        if lane.gcs is not None and lane.gcs.keep_objects:
            archive = self._archive(lane).check(self.client, lane)
            self.summary.archive_checks += 1
            notes += f"; archive {archive.objects} objects"
            if archive.missing:
                self.summary.archive_missing = max(self.summary.archive_missing, archive.missing)
                self._problem(spec, f"committed rows not archived: {archive.describe()}")
        self.say(
            f"kill {spec.number:3d} {lane.name:10} {spec.victim:6} {spec.moment:13} {what}; {notes}"
        )
        return checks

    def finish_round(self, lane: Lane, bookmarks: list[int]) -> Verdict:
        """Re-run without faults until success, check the table is exact, grow the source."""
        self.summary.rounds += 1
        for attempt in range(1, 4):
            started = time.monotonic()
            gcs_url = self.gcs_url if lane.gcs else None
            run = lane.start(self.api_url, self.bq_url, gcs_url=gcs_url, max_retries=5)
            code = wait_for_exit(run)
            self.summary.runs += 1
            self.summary.reruns += 1
            if code == 0:
                self.run_seconds[lane.name] = time.monotonic() - started
                break
            self.summary.failed_clean_runs += 1
            self.summary.problems.append(
                f"round {self.summary.rounds} ({lane.name}): rerun {attempt} without faults "
                f"exited {code} (log {lane.log_of_last_run()})"
            )
            if code is None:
                self.summary.hangs += 1
        verdict = verify_exact(
            self.db, self.client, lane.table, sample_ids(self.db, self.rng, bookmarks)
        )
        self.summary.lost += verdict.lost
        self.summary.duplicated += verdict.duplicated
        self.summary.mismatched += len(verdict.mismatched)
        final = bookmark_of(lane.saved_state())
        newest = verdict.source.max_time
        if not verdict.exact or final != newest:
            self.summary.problems.append(
                f"round {self.summary.rounds} ({lane.name}) after the reruns: "
                f"{verdict.describe()}; saved bookmark {final}, source max(time) {newest}"
            )
        late, appended = grow_source(self.db, self.rng, self.append_rows)
        self.say(
            f"round {self.summary.rounds:3d} {lane.name:10} exact={verdict.exact} "
            f"({verdict.table.describe()}); source +{late} late rows at time {newest}, "
            f"+{appended} appended"
        )
        return verdict

    def _archive(self, lane: Lane) -> Archive:
        assert self.storage is not None
        assert lane.gcs is not None
        return self.archives.setdefault(lane.name, Archive(self.storage, lane.gcs))

    def _problem(self, spec: KillSpec, text: str) -> None:
        self.summary.problems.append(
            f"kill {spec.number} ({spec.lane}, {spec.victim}, {spec.moment}): {text}"
        )


def quiet_disconnects(proxy: BigQueryProxy) -> None:
    """Keep the proxy from printing a traceback when a killed target left mid-request.

    `BigQueryProxy` lets socketserver report a client that went away (BrokenPipeError) as
    an error with a traceback on stderr; here clients going away is the point.
    """
    server = proxy._server  # the proxy offers no option for this
    assert server is not None
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]


def moments_of(lane: Lane) -> list[str]:
    """The moments a lane is killed at: the dedup_view lane's load instead of a MERGE."""
    moments = lane_moments(lane, list(MOMENTS))
    if lane.name != DEDUP_LANE:
        return moments
    return [m for m in moments if m not in ("merge-held", "after-merge")] + list(DEDUP_MOMENTS)


def make_lanes(workdir: Path, sizes: Sizes, modes: list[str]) -> list[Lane]:
    """One lane per mode (`pipe`, `meltano`, `gcs`, `gcs-delete`, `dedup_view`), each with a
    fresh dataset name, folder and (GCS lanes) bucket.
    """
    tag = uuid.uuid4().hex[:8]
    lanes = []
    for mode in modes:
        if mode in GCS_MODES:
            lanes.append(make_gcs_lane(workdir, mode, sizes, tag))
        elif mode == DEDUP_LANE:
            settings = {"load_method": "dedup_view"}
            dataset = f"kill_dedup_{tag}"
            lanes.append(Lane("pipe", workdir / mode, dataset, sizes, name=mode,
                              target_settings=settings))  # fmt: skip
        else:
            lanes.append(Lane(mode, workdir / mode, f"kill_{mode}_{tag}", sizes))
    return lanes


def clean_up(
    lanes: list[Lane], client: bigquery.Client, store: storage.Client | None = None
) -> None:
    """Drop the lanes' datasets, Meltano states and (given `store`) buckets."""
    for lane in lanes:
        client.delete_dataset(lane.dataset, delete_contents=True, not_found_ok=True)
        lane.remove_saved_state()
        if lane.gcs is not None and store is not None:
            delete_bucket(store, lane.gcs.bucket)


def main(argv: list[str] | None = None) -> int:
    """Start the services, run the loop, print the summary; exit 1 unless it passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--rows", type=int, default=20_000, help="initial source rows")
    parser.add_argument("--append", type=int, default=6_000, help="rows appended per round")
    parser.add_argument("--page-size", type=int, default=Sizes.page_size)
    parser.add_argument("--batch-rows", type=int, default=Sizes.batch_max_rows)
    parser.add_argument(
        "--lanes", default="pipe,meltano,gcs", help="pipe,meltano,gcs,gcs-delete,dedup_view"
    )
    parser.add_argument("--json", type=Path, help="also write the summary here as JSON")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    workdir = Path(tempfile.mkdtemp(prefix="kill-loop-"))
    emulator = api = gcs = None
    lanes: list[Lane] = []
    client: bigquery.Client | None = None
    summary: Summary | None = None
    try:
        db = workdir / "flows.db"
        generate = [str(BIN / "flows-api"), "generate", "--rows", str(args.rows)]
        subprocess.run([*generate, "--db", str(db), "--seed", str(seed)], check=True)
        gcs = start_gcs_server(workdir / "gcs-data", workdir / "gcs-server.log")
        emulator = start_strict_bigquery(
            workdir / "bq-data", workdir / "emulator.log", storage_emulator=gcs.url
        )
        api = start_flows_api(db, workdir / "flows-api.log")
        client = emulator_client(emulator.url)
        lanes = make_lanes(workdir, Sizes(args.page_size, args.batch_rows), args.lanes.split(","))
        loop = KillLoop(
            db, api.url, emulator.url, client, lanes, seed,
            append_rows=args.append, gcs_url=gcs.url,
        )  # fmt: skip
        summary = loop.run(args.kills)
    finally:
        if client is not None:
            clean_up(lanes, client, storage_client(gcs.url) if gcs else None)
        for service in (api, emulator, gcs):
            if service is not None:
                service.stop()
    report = summary.report()
    print(report)
    print(f"machine: {machine()}; finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    if args.json:
        args.json.write_text(json.dumps({**summary.as_dict(), "machine": machine()}, indent=2))
    if summary.ok:
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"logs kept in {workdir}", file=sys.stderr)
    return 1


def machine() -> str:
    """CPU count and model, for the record of a long loop."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        model = names[0] if names else ""
    return f"{os.cpu_count()} CPUs {model}, {platform.system()} {platform.release()}".strip()


if __name__ == "__main__":
    sys.exit(main())
