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

LEGACY = ("speedup_vs_sequential", "speedup_vs_chatmodel", "overhead", "rss_ratio", "ray_speedup")  # the line's keys before issue 25


def bench_figures(line: str) -> dict[str, float]:
    """The BENCH line's ``key=value`` pairs, in order."""
    head, *pairs = line.split(" ")
    assert head == "BENCH" and pairs and all(re.fullmatch(r"[a-z_]+=\S+", p) for p in pairs), line
    return {k: float(v) for k, v in (p.split("=") for p in pairs)}


@pytest.mark.slow
def test_bench_runs_tiny_and_ends_with_the_bench_line(tmp_path):
    cmd = [
        sys.executable, "-m", "benchmarks.bench", "--out", str(tmp_path / "bench"),
        "--prompts", "8", "--new-tokens", "2", "--batch-sizes", "2,4", "--repeats", "1",
        "--large-image-size", "0", "--memory-records", "12,24", "--memory-batch", "8", "--aug-images", "2",
        "--overhead-batches", "3", "--natural-prompts", "4", "--natural-batch-sizes", "2", "--natural-steps", "2", "--natural-repeats", "1",
        "--csr-prompts", "2", "--csr-batch-size", "2", "--csr-repeats", "1", "--csr-max-sentence-tokens", "4", "--csr-max-response-chars", "24",
        "--skip-vllm", "--skip-ray", "--skip-label-free", "--skip-eval",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    figures = bench_figures(lines[-1])
    assert list(figures)[: len(LEGACY)] == list(LEGACY), "the earlier keys come first, in their order"
    assert math.isnan(figures.pop("ray_speedup")), "ray_speedup is nan when the Ray builds are skipped"
    assert math.isnan(figures.pop("csr_vllm_vs_hf")), "csr_vllm_vs_hf is nan without the vllm rows"
    assert all(math.isnan(figures.pop(k)) for k in ("stic_speedup", "rlaifv_speedup", "eval_speedup")), "skipped workloads' figures are nan"
    assert set(figures) == {*LEGACY, "csr_speedup"} - {"ray_speedup"}
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
        "csr_speedup (1 over 2",
    ):
        assert name in table, f"{name!r} missing from the table"
    assert "byte-identical across the repeats of each batch size: yes" in table
    assert "CSR data byte-identical across the repeats of each builder row: yes" in table
    assert "failed" not in table


def test_only_selects_workloads_and_the_line_keeps_every_key():
    from benchmarks.bench import BENCH_KEYS, WORKLOADS, bench_line, parse_args

    assert [w.name for w in parse_args(["--only", "csr,seva"]).workloads] == ["seva", "csr"]  # in the bench's order
    assert [w.name for w in parse_args([]).workloads] == [w.name for w in WORKLOADS]
    assert "memory" not in [w.name for w in parse_args(["--skip-memory"]).workloads]
    with pytest.raises(SystemExit):
        parse_args(["--only", "csr,nope"])
    assert {k for w in WORKLOADS for k in w.keys} == set(BENCH_KEYS)  # every figure has its place in the line
    line = bench_line({"csr_speedup": 9.123, "overhead": 1.0456, "later_key": 2.0})
    assert line.startswith("BENCH speedup_vs_sequential=nan speedup_vs_chatmodel=nan overhead=1.046 rss_ratio=nan ray_speedup=nan csr_speedup=9.12")
    assert line.endswith(" later_key=2.00") and bench_figures(line)["csr_speedup"] == 9.12


@pytest.mark.slow
def test_label_free_only_times_both_strategies_against_their_loops(tmp_path):
    cmd = [
        sys.executable, "-m", "benchmarks.bench", "--only", "label_free", "--out", str(tmp_path / "bench"),
        "--lf-prompts", "3", "--lf-rlaifv-prompts", "2", "--lf-samples", "2", "--lf-tokens", "2", "--lf-batch", "4", "--lf-repeats", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    figures = bench_figures(proc.stdout.strip().splitlines()[-1])
    assert all(math.isfinite(figures[k]) and figures[k] > 0 for k in ("stic_speedup", "rlaifv_speedup")), proc.stdout[-2000:]
    assert math.isnan(figures["csr_speedup"]), "a workload that did not run has nan"
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
