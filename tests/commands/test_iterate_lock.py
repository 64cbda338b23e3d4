"""One ``seva iterate`` per work dir, and the training it starts ends with it (issue 26, item 4).

``kill -9`` of the iterate process used to leave ``llamafactory-cli train`` running (reparented to
pid 1); the immediate rerun deleted the adapter folder and trained into it a second time beside it.
The real ``seva iterate`` CLI and the real ``llamafactory-cli`` on the tiny LLaVA twin.
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

from helpers import REPO, alive, live_descendants, make_images
from seva_plugin.commands.iterate import LOCK_FILE, Iteration
from seva_plugin.pipeline.files import OutputBusy, output_lock

pytest.importorskip("llamafactory")

RECIPE = os.path.join(REPO, "recipes", "tiny_dpo_cpu.yaml")


@pytest.fixture
def build_yaml(tiny_llava, tmp_path) -> str:
    names = make_images(tmp_path / "images", 3)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "image": f"images/{n}", "question": "Describe the image."}) + "\n" for i, n in enumerate(names)))
    config = {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": str(prompts)},
        "augment": {"name": "diffusion_noise", "step": 800},
        "backend": {"name": "hf", "batch_size": 4, "max_new_tokens": 6},
        "filters": [],
        "output": {"dataset_dir": str(tmp_path / "ignored"), "name": "lock_iter"},
    }
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_kill_9_of_iterate_ends_its_training_and_a_second_iterate_refuses(build_yaml, tmp_path):
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "seva_plugin.commands.cli", "iterate", build_yaml, RECIPE, "--rounds", "1", "--work-dir", str(work)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, training = time.time() + 400, set()
        while time.time() < deadline and proc.poll() is None:
            training = {p for p in live_descendants(proc.pid) if "train" in cmdline(p) and "tethered" not in cmdline(p)}
            if training and (work / "r0" / "train.log").exists():
                break
            time.sleep(0.2)
        assert proc.poll() is None and training, "iterate ended before its training could be caught: " + proc.stderr.read().decode()[-2000:]
        time.sleep(3)  # training under way (imports, model loading)
        assert not (work / "r0" / "adapter" / "adapter_model.safetensors").exists(), "training finished before the kill"

        # a second iterate on the same work dir refuses at once, naming the first
        started = time.time()
        with pytest.raises(OutputBusy, match=rf"another seva iterate \(pid {proc.pid}, since .*\) is running in {work}"):
            Iteration(build_yaml, RECIPE, 1, str(work)).run(progress=False)
        assert time.time() - started < 60

        tree = live_descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 30
        while alive(tree) and time.time() < deadline:
            time.sleep(0.2)
        left = alive(tree)
        assert not left, f"still running after the kill: {[cmdline(p) for p in left]}"
        with output_lock(os.path.join(work, LOCK_FILE), "the work dir"):  # released with its holder
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in alive(live_descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_tethered_command_goes_with_its_parent(tmp_path):
    """A stand-in for a training that outlives a short test: `sleep` under a parent killed with SIGKILL."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\nfrom seva_plugin.commands import tethered\n"
        "sys.exit(tethered.run(['sh', '-c', 'sleep 300 & sleep 300'], None))\n"  # a command and a child of its own
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.time() + 60
        while len([p for p in live_descendants(parent.pid) if cmdline(p).startswith("sleep")]) < 2 and time.time() < deadline:
            time.sleep(0.1)
        tree = live_descendants(parent.pid)
        assert len([p for p in tree if cmdline(p).startswith("sleep")]) == 2
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 20
        while alive(tree) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(tree), [cmdline(p) for p in alive(tree)]
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in alive(live_descendants(parent.pid)):
            os.kill(pid, signal.SIGKILL)
