"""One Ctrl-C ends a ``seva`` command within 30 s, leaving no process it started (issue 26, item 11),
and its exit status says which signal ended it.

Ctrl-C during vLLM's engine start-up was ignored or left the build running for minutes (here: still
running 120 s after it). The signal is sent to the command's whole process group, as a terminal
sends it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from helpers import alive, live_descendants, make_images


def interrupt_group(proc: subprocess.Popen) -> float:
    """SIGINT to the process group, as Ctrl-C in a terminal; the seconds until the process exited."""
    started = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    return time.time() - started


@pytest.fixture(scope="module")
def vllm_build(tmp_path_factory) -> str:
    pytest.importorskip("vllm")
    from seva_plugin.dev.tiny_models import build_tiny_llava

    root = tmp_path_factory.mktemp("interrupt")
    model = os.path.join(tmp_path_factory.getbasetemp(), "vllm_twins", "llava")  # test_vllm.py's twin, when it ran first
    if not os.path.isfile(os.path.join(model, "config.json")):
        build_tiny_llava(model, seed=0, head_dim=32)  # vLLM's CPU attention needs head_dim >= 32
    names = make_images(root / "images", 4)
    (root / "p.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "Q?"}) + "\n" for i, n in enumerate(names)))
    config = {
        "model": model,
        "template": "llava",
        "source": {"file": str(root / "p.jsonl")},
        "backend": {"name": "vllm", "batch_size": 4, "max_new_tokens": 8, "max_model_len": 512, "enforce_eager": True},
        "output": {"dataset_dir": str(root / "out"), "name": "v"},
    }
    (root / "build.yaml").write_text(yaml.safe_dump(config))
    return str(root / "build.yaml")


@pytest.mark.slow
def test_one_ctrl_c_during_vllm_engine_start_up_ends_the_build(vllm_build, tmp_path):
    """Sent once the engine core process runs (still loading: the engine needs tens of seconds more on CPU)."""
    log = tmp_path / "build.log"
    cmd = [sys.executable, "-m", "seva_plugin.commands.cli", "build", vllm_build, "--no-progress", f"output.dataset_dir={tmp_path / 'out'}"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline, engine = time.time() + 300, set()
        while time.time() < deadline and proc.poll() is None and not engine:
            engine = {p for p in live_descendants(proc.pid) if "EngineCor" in open(f"/proc/{p}/comm").read()} if os.path.isdir("/proc") else set()
            time.sleep(0.2)
        assert engine and proc.poll() is None, "the engine did not start: " + log.read_text()[-2000:]
        time.sleep(3)
        started = live_descendants(proc.pid)
        signalled = time.time()
        seconds = interrupt_group(proc)
        print(f"seva build exited {seconds:.1f} s after one Ctrl-C during engine start-up")
        text = log.read_text()
        assert proc.returncode == 130, text[-3000:]
        assert seconds < 30, seconds
        assert "interrupted: finished batches are kept" in text and "Traceback" not in text, text[-3000:]
        while alive(started) and time.time() < signalled + 30:  # the engine's processes: gone within 30 s of the Ctrl-C too
            time.sleep(0.2)
        assert not alive(started), [open(f"/proc/{p}/cmdline").read() for p in alive(started)]
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in alive(live_descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)


SIGNALLED = """
import os, signal, sys, time
from seva_plugin.commands import interrupt
with interrupt.handled() as received:
    try:
        os.kill(os.getpid(), signal.{name})
        time.sleep(30)
    except KeyboardInterrupt:
        interrupt.force_exit(received)  # what seva's main does after its clean-up
"""


@pytest.mark.parametrize(("name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_the_exit_status_is_the_shells_for_the_signal(name, status):
    """A batch system or a script tells Ctrl-C from SIGTERM by the status, 128 + the signal."""
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", SIGNALLED.format(name=name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == status, proc.stderr[-2000:]
    assert "interrupted: finished batches are kept" in proc.stderr
    assert time.time() - started < 20  # at once, not after the 15 s grace
