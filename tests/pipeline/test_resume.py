"""Crash safety: kill -9, torn writes, a full disk, and concurrent registry updates."""

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from helpers import make_images, read_jsonl
from seva_plugin.pipeline.build import build
from seva_plugin.pipeline.files import WriteError
from seva_plugin.pipeline.journal import COMMIT, Journal


@pytest.fixture
def many_prompts(tmp_path):
    names = make_images(tmp_path / "images", 12)
    path = tmp_path / "many.jsonl"
    with open(path, "w") as fh:
        for i in range(24):
            fh.write(json.dumps({"id": f"m{i:02d}", "image": f"images/{names[i % 12]}", "question": f"What is in picture {i}?"}) + "\n")
    return str(path)


def config(tiny_llava, prompts, out, tokens=8, batch=4):
    return {
        "model": tiny_llava,
        "template": "llava",
        "source": {"file": prompts},
        "augment": {"name": "diffusion_noise", "step": 800},
        "backend": {"name": "hf", "batch_size": batch, "max_new_tokens": tokens},
        "output": {"dataset_dir": str(out), "name": "resumable"},
    }


def commits(journal_path) -> int:
    try:
        return open(journal_path, "rb").read().count(COMMIT)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_kill_9_mid_build_then_rerun_equals_an_uninterrupted_build(tiny_llava, many_prompts, tmp_path):
    reference = build(config(tiny_llava, many_prompts, tmp_path / "ref", tokens=16, batch=2), progress=False)

    cfg_path = tmp_path / "build.yaml"
    cfg_path.write_text(yaml.safe_dump(config(tiny_llava, many_prompts, tmp_path / "out", tokens=16, batch=2)))
    journal = tmp_path / "out" / ".seva" / "resumable.journal.jsonl"
    cmd = [sys.executable, "-m", "seva_plugin.commands.cli", "build", str(cfg_path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while commits(journal) < 4 and time.time() < deadline and proc.poll() is None:  # header + 3 batches
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = commits(journal) - 1
    assert 3 <= done_before < 12 and not (tmp_path / "out" / "resumable.jsonl").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    final = tmp_path / "out" / "resumable.jsonl"
    assert final.read_bytes() == open(reference.data_file, "rb").read()
    ids = [r["id"] for r in read_jsonl(final)]
    assert len(ids) == len(set(ids))
    manifest = json.load(open(tmp_path / "out" / "resumable.manifest.json"))
    assert manifest["resumed"] is True and manifest["counts"]["records"] == 24


def test_torn_tail_is_cut_back_to_the_last_commit(tmp_path):
    path = str(tmp_path / "j.jsonl")
    j = Journal(path, "fp")
    j.append([{"kind": "pair", "id": "a"}, {"kind": "reject", "id": "b", "reason": "r", "code": "c"}])
    with open(path, "ab") as fh:  # a batch that died half-written: lines without their commit, then a torn line
        fh.write(b'{"kind": "pair", "id": "c"}\n{"kind": "pa')
    j2 = Journal(path, "fp")
    assert dict(j2.done) == {"a": 1, "b": 1}
    assert open(path, "rb").read().endswith(COMMIT)
    assert [e["id"] for e in j2.entries()] == ["a", "b"]


def test_a_different_config_does_not_silently_resume(tmp_path):
    path = str(tmp_path / "j.jsonl")
    Journal(path, "config-A").append([{"kind": "pair", "id": "a"}])
    with pytest.raises(Exception, match="different config"):
        Journal(path, "config-B")
    assert not Journal(path, "config-B", on_mismatch="restart").done


def test_full_disk_stops_cleanly_and_the_rerun_resumes(tiny_llava, prompts, tmp_path, monkeypatch):
    cfg = config(tiny_llava, prompts, tmp_path / "out", batch=3)
    reference = build(config(tiny_llava, prompts, tmp_path / "ref", batch=3), progress=False)
    appends = []

    class FillsUp:
        """A journal file on a disk that fills up halfway through the third batch."""

        def __init__(self, path, mode):
            self.fh = open(path, mode)

        def write(self, data):
            if "a" in self.fh.mode:
                appends.append(1)
                if len(appends) == 3:
                    self.fh.write(data[: len(data) // 2])
                    self.fh.flush()
                    raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __iter__(self):
            return iter(self.fh)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr("seva_plugin.pipeline.journal.open", FillsUp, raising=False)
    with pytest.raises(WriteError, match="disk is full.*rerun the same command to resume"):
        build(cfg, progress=False)
    assert not os.path.exists(tmp_path / "out" / "resumable.jsonl")
    monkeypatch.undo()
    result = build(cfg, progress=False)
    assert open(result.data_file, "rb").read() == open(reference.data_file, "rb").read()


def _register_many(args):
    dataset_dir, name, rounds = args
    from writer_pairs import manifest_for

    from seva_plugin.plugins.writers.llamafactory import LlamaFactoryWriter

    writer = LlamaFactoryWriter(dataset_dir=dataset_dir, dataset_name=name)
    for _ in range(rounds):
        files = writer.write(iter([]), overwrite=False).manifest_files()
        manifest_for(files, 0, dataset_dir, name)  # as a build does: the next write may replace what this one wrote


def test_concurrent_builds_into_one_folder_both_land(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"user_set": {"file_name": "u.json", "custom": [1, 2]}}))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        pool.map(_register_many, [(str(tmp_path), f"build_{k}", 25) for k in range(3)])
    info = json.load(open(tmp_path / "dataset_info.json"))
    assert set(info) == {"user_set", "build_0", "build_1", "build_2"}
    assert info["user_set"] == {"file_name": "u.json", "custom": [1, 2]}
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
