"""Crash consistency (issue "Trustworthy under faults"), the reduced CI form of
benchmarks/soak.py: each operation (backup, prune, garbage collection, push
sync, pull sync) runs in a real child process that is SIGKILLed at 6 seeded
kill points spread over the run (a filesystem mutation, an S3 request before
or after the server executed it, or a delay; every point must kill). The seed
varies per run (CRASH_SEED=N repeats one; it is printed in the report header
and in every failure). `make soak` runs the long form (24 points each). After the kill the datastore and the bucket must be
consistent (every finished snapshot complete and restorable to the exact data,
no unfinished snapshot shown as finished, check_bucket_consistency clean),
the next run of the same operation must complete (stale locks and writer
markers of the killed process do not block it) and leave exactly the right
state. The harness is tests/soak/crashpoints.py.
"""
import os
import time

import pytest

from datastores.engine.datastore import WRITERS_DIR, Datastore
from datastores.engine.gc import GC_LOCK, garbage_collection
from tests.soak.crashpoints import (BASE, DAY, SCENARIOS, SEED, Case, KillPoint, SoakEnv, calibrate,
                                    check_store, choose_kill_points, run_case, run_child)

POINTS = 4  # push and pull have 4 kill modes: each is used every run
REPEAT = f"(CRASH_SEED={SEED} repeats these kill points)"


@pytest.fixture(scope="module")
def soak_env(s3_server, tmp_path_factory):
    env = SoakEnv(s3_server.url, tmp_path_factory.mktemp("crash"))
    env.calibrations = {}
    yield env
    env.close()


def kill_points(env, op):
    if op not in env.calibrations:
        env.calibrations[op] = calibrate(SCENARIOS[op](), env)
    return choose_kill_points(SCENARIOS[op](), env.calibrations[op], POINTS, SEED)


@pytest.mark.parametrize("i", range(POINTS))
@pytest.mark.parametrize("op", ["backup", "prune", "gc", "push", "pull"])
def test_killed_operation_leaves_consistent_state_and_rerun_completes(soak_env, op, i):
    kp = kill_points(soak_env, op)[i]
    print(f"{op}: kill point {i + 1} of {POINTS}: {kp} {REPEAT}")
    result = run_case(SCENARIOS[op](), kp, soak_env)
    assert result.killed, f"{op} was not killed at {kp} {REPEAT}"
    assert result.ok, f"{result.describe()}\n{REPEAT}"
    assert result.data_lost == 0


@pytest.mark.parametrize("op", ["backup", "prune", "gc", "push", "pull"])
def test_kill_points_cover_every_mode_of_the_operation(soak_env, op):
    """Each operation's CI points use all its kill modes (pull a delay, push an
    inventory write), spread over the run."""
    points = kill_points(soak_env, op)
    assert {p.mode for p in points} == set(SCENARIOS[op].kill_modes), (points, REPEAT)
    for mode in ("event", "request-pre", "request-post"):
        values = [p.value for p in points if p.mode == mode]
        assert values == sorted(values) and len(set(values)) == len(values), (points, REPEAT)


def test_calibrated_runs_have_enough_kill_points(soak_env):
    """The soak needs >= 20 distinct kill points per operation: the seeded data
    must give each operation that many filesystem mutations or requests."""
    for op in SCENARIOS:
        kill_points(soak_env, op)
        cal = soak_env.calibrations[op]
        assert max(cal.events, cal.requests) >= 20, (op, cal)


def test_stale_writer_marker_and_gc_lock_of_killed_processes_do_not_block(soak_env):
    """A backup killed mid-way leaves `.writers/backup-…` behind and a GC killed
    mid-way leaves `.gc.lock`; neither stops the next GC or backup, and the
    stale writer no longer holds GC's cutoff back."""
    sc = SCENARIOS["backup"]()
    case = Case(soak_env, "stale")
    try:
        sc.setup(case)
        store_path = case.dir / "store"
        run = run_child(sc.spec(case, False), soak_env, KillPoint("event", 8))
        assert run.killed
        stale = os.listdir(store_path / WRITERS_DIR)
        assert len(stale) == 1 and stale[0].startswith("backup-")
        assert not (store_path / sc.NEW.rel_dir / "index.json.blob").exists()
        store = Datastore(store_path)
        assert store.oldest_writer_start() is None  # not a running writer
        ref = [r for r in store.list_snapshots() if r.rel_dir == sc.NEW.rel_dir][0]
        assert not ref.finished  # listed, as unfinished

        gc = run_child({"op": "gc", "store": str(store_path), "now": time.time() + 3 * DAY},
                       soak_env, KillPoint("event", 10))
        assert gc.killed and (store_path / GC_LOCK).exists()
        st = garbage_collection(store, now=time.time() + 3 * DAY)  # the lock file is no obstacle
        assert st.removed_chunks > 0  # chunks of the killed backup: nothing references them
        assert os.listdir(store_path / WRITERS_DIR) == []

        again = run_child(sc.spec(case, True), soak_env)
        assert again.done, again.stderr
        chk = check_store(store_path, case.model, [s.rel_dir for s in BASE] + [sc.RERUN.rel_dir], case.scratch)
        assert chk.ok, chk
    finally:
        case.cleanup()


def test_push_killed_after_chunk_delete_then_same_data_again_stays_restorable(soak_env):
    # the 3rd DeleteObjects of the run deletes the vanished snapshot's chunks; the
    # server executes it, then the push is killed before it sees the answer
    result = run_case(SCENARIOS["push"](), KillPoint("request-post", 3, "DELETE"), soak_env)
    assert result.killed
    assert result.ok, result.describe()


def test_push_killed_before_chunk_delete_rerun_removes_orphaned_chunks(soak_env):
    result = run_case(SCENARIOS["push"](), KillPoint("request-pre", 3, "DELETE"), soak_env)
    assert result.killed
    assert result.ok, result.describe()
