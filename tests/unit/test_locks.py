import json
import logging
import multiprocessing
import time
from pathlib import Path

import pytest

from tuneops.core.locks import LockTimeout, lock_key, store_lock
from tuneops.core.store import ArtifactStore

INCREMENTS = 50


@pytest.fixture(scope="module")
def s3_endpoint(moto_s3):
    import boto3

    boto3.client("s3").create_bucket(Bucket="tuneops-locks")
    return moto_s3


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "root"))
    request.getfixturevalue("s3_endpoint")
    return ArtifactStore(f"s3://tuneops-locks/{request.node.name}")


def _increment_under_lock(root: str, counter: str, owner: str) -> None:
    """A read-sleep-write of a shared counter file: it loses updates unless the lock makes it exclusive."""
    store = ArtifactStore(root)
    path = Path(counter)
    for _ in range(INCREMENTS):
        with store_lock(store, "counter", owner=owner, ttl_seconds=30, wait_seconds=30, poll_seconds=0.001):
            count = int(path.read_text())
            time.sleep(0.001)
            path.write_text(str(count + 1))


def test_two_processes_never_lose_an_update(store, tmp_path):
    counter = tmp_path / "counter.txt"
    counter.write_text("0")
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(target=_increment_under_lock, args=(store.root, str(counter), f"worker-{i}"))
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    # Without the lock the two loops interleave between read and write, and this ends short of 100.
    assert int(counter.read_text()) == 2 * INCREMENTS
    assert store.list_objects("locks") == []


def test_waiting_too_long_names_the_holder_and_what_to_do(store):
    with store_lock(store, "registry/support-bot", owner="train_dag/run-7"):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            with store_lock(
                store, "registry/support-bot", owner="other", wait_seconds=0.3, poll_seconds=0.05
            ):
                pytest.fail("the lock was granted while another owner held it")
        assert 0.3 <= time.monotonic() - started < 5
    message = str(caught.value)
    assert "'train_dag/run-7'" in message and "expires at" in message
    assert f"delete the lock object at {store.uri(lock_key('registry/support-bot'))}" in message
    # Released on exit: the next caller gets it at once.
    with store_lock(store, "registry/support-bot", owner="other", wait_seconds=0):
        pass


def test_a_lock_left_by_a_dead_owner_is_broken_once_expired(store, caplog):
    dead = {"owner": "crashed-worker", "acquired_at": time.time() - 700, "expires_at": time.time() - 100}
    store.write_bytes(lock_key("ingest"), json.dumps(dead).encode())
    with caplog.at_level(logging.WARNING, logger="tuneops.core.locks"):
        with store_lock(store, "ingest", owner="survivor", wait_seconds=0) as lease:
            held = json.loads(store.read_bytes(lock_key("ingest")))
    assert held["owner"] == "survivor" and held["token"] == lease.token
    assert "breaking stale lock" in caplog.text and "'crashed-worker'" in caplog.text
    assert store.list_objects("locks") == []


def test_an_expired_holder_does_not_release_the_lock_of_whoever_took_it_over(store, caplog):
    slow = store_lock(store, "slow", owner="slow-task", ttl_seconds=0.2)
    slow.__enter__()
    time.sleep(0.3)
    after = store_lock(store, "slow", owner="next-task", wait_seconds=0)
    after.__enter__()
    with caplog.at_level(logging.WARNING, logger="tuneops.core.locks"):
        slow.__exit__(None, None, None)
    assert json.loads(store.read_bytes(lock_key("slow")))["owner"] == "next-task"
    assert "no longer ours" in caplog.text and "'next-task'" in caplog.text
    after.__exit__(None, None, None)
    assert store.list_objects("locks") == []


def test_a_heartbeat_keeps_a_short_lease_held_for_as_long_as_the_block_runs(store):
    """A long job holds a short lease: renewed, it outlives its TTL; a dead holder's lapses within it."""
    with store_lock(store, "train-out", owner="trainer", ttl_seconds=1.0, heartbeat_seconds=0.2) as lease:
        time.sleep(2.5)  # well past the first expiry: only renewals keep it
        with pytest.raises(LockTimeout, match="still held by 'trainer'"):
            with store_lock(store, "train-out", owner="retry", wait_seconds=0):
                pass
        assert not lease.lost.is_set()
    assert store.list_objects("locks") == []


def test_a_heartbeat_that_finds_its_lease_taken_over_says_so(store):
    with store_lock(store, "train-out", owner="slow", ttl_seconds=0.5, heartbeat_seconds=5) as lease:
        time.sleep(0.7)  # the heartbeat is too slow: the lease lapses and a second holder takes it
        with store_lock(store, "train-out", owner="second", ttl_seconds=30, wait_seconds=5):
            deadline = time.monotonic() + 10
            while not lease.lost.is_set() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert lease.lost.is_set(), "the first holder must learn it lost the lock and stop writing"
