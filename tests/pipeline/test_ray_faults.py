"""Ray faults (issue 26, items 10, 12, 14 and 15): a cluster that cannot be joined is a message within
seconds; a record that crashes a worker process is isolated across the deaths and rejected with its
id; the manifest counts every restart; Ray settings Ray would choke on are named.

Scripted backends (no model) answer on the workers: they reach them by value, as a plugin registered
only in the driver does. The tests that start a Ray of their own (through a build) come first; the
others share one local Ray (module fixture).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

import pytest

from helpers import read_jsonl, scripted_config, use_backends
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import Backend, Completion
from seva_plugin.pipeline.build import Build

pytest.importorskip("ray")

CULPRIT = "p5"


class Crashing(Backend):
    """Answers like a model; the worker process dies of SIGSEGV on the record ``crash_on`` (a decoder or kernel bug
    only that input hits), and answers nothing while the file ``hold`` exists."""

    name = "crashing"

    def __init__(self, model, template, batch_size: int = 4, crash_on: str = "", hold: str = ""):
        self.batch_size, self.crash_on, self.hold = batch_size, crash_on, hold

    def generate(self, requests):
        if any(r.record.id == self.crash_on for r in requests):
            os.kill(os.getpid(), signal.SIGSEGV)
        while self.hold and os.path.exists(self.hold):
            time.sleep(0.05)
        return [[Completion("red" if r.view.clean else "blue", "eos", [])] * r.n for r in requests]  # no helpers: Ray workers import this class


@pytest.fixture(scope="module", autouse=True)
def by_value():
    """The scripted backend reaches the workers by value, as a plugin registered only in the driver does."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def config(tmp_path, monkeypatch) -> dict:
    use_backends(monkeypatch, Crashing)
    cfg = scripted_config(tmp_path, n=12)
    cfg["backend"] = {"name": "crashing", "batch_size": 4}
    cfg["ray"] = {"num_workers": 2, "resources_per_worker": {"CPU": 1}}
    return cfg


def run_within(build: Build, seconds: float):
    """``build.run()`` in a thread; its error, or a failure when it is still running after ``seconds``."""
    box: dict = {}

    def target():
        try:
            box["result"] = build.run(progress=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    started = time.time()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return box, time.time() - started


# -- item 10: an address Ray cannot join fails within seconds ---------------------------------------
@pytest.fixture
def not_a_ray_server():
    """A TCP server that accepts and says nothing (a wrong port)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.slow
@pytest.mark.parametrize("address", ["127.0.0.1:1", "nohost.invalid:6379", "ray://127.0.0.1:1", "silent"])
def test_a_bad_ray_address_fails_within_30_s_naming_it(config, address, not_a_ray_server):
    """`127.0.0.1:1` and `nohost.invalid:6379` used to retry for more than 5 minutes."""
    address = not_a_ray_server if address == "silent" else address
    config["ray"]["address"] = address
    box, seconds = run_within(Build(config), 60)
    assert seconds < 30, seconds
    error = box.get("error")
    assert isinstance(error, ConfigError), error
    assert f"ray.address='{address}'" in str(error) and "ray start --head" in str(error)


@pytest.mark.slow
def test_an_unknown_ray_init_argument_is_named(config):
    config["ray"]["init_kwargs"] = {"num_cpu": 2}
    box, _ = run_within(Build(config), 60)
    assert isinstance(box.get("error"), ConfigError)
    assert "unknown ray.init() argument 'num_cpu' in ray.init_kwargs. Did you mean 'num_cpus'?" in str(box["error"])


@pytest.mark.slow
def test_a_runtime_env_ray_cannot_set_up_is_one_message(config):
    temp = tempfile.mkdtemp(prefix="sray", dir="/tmp")
    config["ray"]["init_kwargs"] = {"num_cpus": 2, "_temp_dir": temp, "runtime_env": {"pip": ["surely-not-a-package-26"]}}
    try:
        box, _ = run_within(Build(config), 300)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    error = box.get("error")
    assert isinstance(error, ConfigError), error
    assert "could not set up ray.init_kwargs.runtime_env" in str(error) and "install the packages on the nodes" in str(error)
    assert len(str(error).splitlines()) == 1


# -- builds on a shared local Ray -----------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    import ray

    temp = tempfile.mkdtemp(prefix="sray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_record_that_crashes_the_worker_is_isolated_and_rejected(config, local_ray):
    """It used to kill every worker in turn, and every rerun, with no record named."""
    config["backend"]["crash_on"] = CULPRIT
    box, _ = run_within(Build(config), 300)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.kept == 11 and result.rejected == {"worker_crash": 1}
    [reject] = read_jsonl(result.rejects_file)
    assert reject["id"] == CULPRIT and "worker process died" in reject["reason"]
    assert [r["id"] for r in read_jsonl(result.data_file)] == [f"p{i}" for i in range(12) if f"p{i}" != CULPRIT]
    workers = json.load(open(result.manifest_file))["workers"]["workers"]
    # the batch died twice whole, then once for the half and once for the record alone
    assert sum(w["restarts"] for w in workers) == 4 and all(w["alive"] for w in workers)


@pytest.mark.slow
def test_every_restart_is_counted(config, local_ray):
    """5 kills were recorded as 2: restarts were counted from the pids results came back with."""
    hold = os.path.join(os.path.dirname(config["source"]["file"]), "hold")
    open(hold, "w").close()  # the build waits until the kills are done
    config["backend"] = {"name": "crashing", "batch_size": 2, "hold": hold}
    config["ray"] = {"num_workers": 2, "resources_per_worker": {"CPU": 1}, "max_restarts": 10}
    build = Build(config)
    box: dict = {}

    def target():
        try:
            box["result"] = build.run(progress=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def pid_of(worker: int, old: int | None = None) -> int:
        """The worker's process once Ray has it up (asked of Ray: the worker itself is busy answering)."""
        from ray._private import state

        deadline = time.time() + 120
        while time.time() < deadline:
            info = state.actors(actor_id=build.workers.actors[worker]._actor_id.hex())
            if info["State"] == "ALIVE" and info["Pid"] not in (0, old):
                return info["Pid"]
            time.sleep(0.1)
        raise AssertionError("the worker did not come back")

    while not getattr(getattr(build, "workers", None), "actors", None):
        time.sleep(0.1)
    pid = pid_of(0)
    for _ in range(5):
        os.kill(pid, signal.SIGKILL)
        pid = pid_of(0, pid)
    os.unlink(hold)
    thread.join(600)
    assert not thread.is_alive() and "result" in box, box.get("error", "the build did not finish")
    workers = json.load(open(box["result"].manifest_file))["workers"]["workers"]
    assert workers[0]["restarts"] == 5 and workers[1]["restarts"] == 0
    # the killed worker's pieces were sent again (those it held through more than one death are rejected as worker_crash)
    assert box["result"].kept + box["result"].rejected.get("worker_crash", 0) == 12
