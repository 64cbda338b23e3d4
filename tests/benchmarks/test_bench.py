"""``python -m benchmarks.bench`` runs end to end on a tiny setting and ends with a parseable BENCH line.

No timing is asserted: the figures depend on the machine (see docs/performance.md).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("llamafactory")

BENCH_LINE = re.compile(
    r"^BENCH speedup_vs_sequential=(?P<x>\S+) speedup_vs_chatmodel=(?P<y>\S+) overhead=(?P<z>\S+) rss_ratio=(?P<w>\S+) ray_speedup=(?P<r>\S+)"
    r" stic_speedup=(?P<s>\S+) rlaifv_speedup=(?P<v>\S+)"
    r" eval_speedup=(?P<e>\S+)$"
)


@pytest.mark.slow
def test_bench_runs_tiny_and_ends_with_the_bench_line(tmp_path):
    cmd = [
        sys.executable, "-m", "benchmarks.bench", "--out", str(tmp_path / "bench"),
        "--prompts", "8", "--new-tokens", "2", "--batch-sizes", "2,4", "--repeats", "1",
        "--large-image-size", "0", "--memory-records", "12,24", "--memory-batch", "8", "--aug-images", "2",
        "--overhead-batches", "3", "--natural-prompts", "4", "--natural-batch-sizes", "2", "--natural-steps", "2", "--natural-repeats", "1",
        "--skip-vllm", "--skip-ray", "--skip-label-free", "--skip-eval",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    match = BENCH_LINE.match(lines[-1])
    assert match, f"last line is not the BENCH line: {lines[-1]!r}"
    figures = {k: float(v) for k, v in match.groupdict().items()}
    assert math.isnan(figures.pop("r")), "ray_speedup is nan when the Ray builds are skipped"
    assert math.isnan(figures.pop("s")) and math.isnan(figures.pop("v")), "the label-free figures are nan when skipped"
    assert math.isnan(figures.pop("e")), "eval_speedup is nan when the probes are skipped (tests/benchmarks/test_eval_speed.py runs them)"
    assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures
    table = proc.stdout
    for name in (
        "1. builder",
        "2. official-style loop",
        "3. ChatModel",
        "4. bare batched generate",
        "diffusion_noise",
        "moco",
        "peak RSS",
        "overhead over 3 batches",
        "natural answer lengths",
    ):
        assert name in table, f"{name!r} missing from the table"
    assert "byte-identical across the repeats of each batch size: yes" in table


@pytest.mark.slow
def test_label_free_only_times_both_strategies_against_their_loops(tmp_path):
    cmd = [
        sys.executable, "-m", "benchmarks.bench", "--label-free-only", "--out", str(tmp_path / "bench"),
        "--lf-prompts", "3", "--lf-rlaifv-prompts", "2", "--lf-samples", "2", "--lf-tokens", "2", "--lf-batch", "4", "--lf-repeats", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    match = re.match(r"^BENCH stic_speedup=(\S+) rlaifv_speedup=(\S+)$", proc.stdout.strip().splitlines()[-1])
    assert match and all(math.isfinite(float(v)) and float(v) > 0 for v in match.groups()), proc.stdout[-2000:]
    assert "STIC     3 prompts: builder" in proc.stdout and "3 pairs" in proc.stdout  # every image gives a pair
    probes = re.search(r"yes/no probes asked \(claims found\): builder (\d+), loop (\d+)", proc.stdout)
    assert probes and int(probes.group(1)) > 0 and int(probes.group(2)) > 0, proc.stdout[-2000:]
    assert "load average" in proc.stdout


def test_prepared_inputs_are_what_generate_would_compute(tiny_llava, tmp_path):
    """The bench's bare baseline and the prefetch thread both rely on ``model_inputs``/``prepare``:
    a prepared batch must give exactly the answers of an unprepared one."""
    import torch

    from benchmarks.bench import make_images, write_prompts
    from seva_plugin.interfaces import CLEAN, GenerationRequest, View
    from seva_plugin.pipeline.images import load_rgb
    from seva_plugin.pipeline.records import LoadedRecord
    from seva_plugin.pipeline.views import record_seed
    from seva_plugin.plugins.augmenters.diffusion_noise import DiffusionNoise
    from seva_plugin.plugins.augmenters.moco import Moco
    from seva_plugin.plugins.backends.hf import HfBackend
    from seva_plugin.plugins.sources.jsonl import JsonlSource

    images = make_images(str(tmp_path / "img"), 6, 48)
    prompts = write_prompts(str(tmp_path / "p.jsonl"), images, 6)
    records = [LoadedRecord(r, [load_rgb(p) for p in r.images], record_seed(0, r.id)) for r in JsonlSource(prompts).iter_records()]
    backend = HfBackend(model=tiny_llava, template="llava", max_new_tokens=6, min_new_tokens=6)
    for augmenter in (DiffusionNoise(step=800), Moco()):
        views = [CLEAN, View(1, augmenter)]

        def requests(logprobs=False, views=views):
            return [GenerationRequest(r, view, logprobs=logprobs) for view in views for r in records]

        plain = backend.generate(requests())
        backend.prepare(requests())
        assert backend.generate(requests()) == plain
        ids, _, mm = backend.model_inputs(requests())
        assert len(ids) == 2 * len(records) and mm["pixel_values"].shape[0] == 2 * len(records)
        assert not torch.equal(mm["pixel_values"][: len(records)], mm["pixel_values"][len(records) :])
    # min_new_tokens = max_new_tokens: every answer is exactly that long (the bench's fixed length)
    assert all(len(a[0].token_ids) == 6 for a in backend.generate(requests(logprobs=True)))
