"""Ray scaling: the same build on 2 Ray workers against 1 worker (the build in one process).

``ray.num_workers: 1`` runs the batches in the build's own process (Ray is never imported);
``ray.num_workers: 2`` runs them on two Ray actors with one CPU and one torch thread each, the
driver keeping the source, the journal and the writer. As everywhere in the bench, loading the
model is left out of the timings: the one-process build shares the bench's loaded model, and each
Ray worker is started and answers one warm-up record before the clock starts (Ray's start, the
actors' imports and their model loading are reported beside, not timed). The bytes of the data
file must be the same in every run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field

from benchmarks.common import Section, Timing, build_config, log, median, quiet, sha256, write_prompts

NAME = "ray"
KEYS = ("ray_speedup",)


def add_arguments(p) -> None:
    g = p.add_argument_group("ray")
    g.add_argument("--ray-workers", type=int, default=2, help="Ray workers of the scaling figure, against 1 (default: 2)")
    g.add_argument("--ray-prompts", type=int, default=512, help="prompts of the Ray scaling builds (default: 512)")
    g.add_argument("--ray-batch", type=int, default=32, help="batch size of the Ray scaling builds (default: 32)")
    g.add_argument("--ray-repeats", type=int, default=3, help="runs of each Ray scaling build (default: 3)")


def run(ctx) -> Section:
    """Workload ``ray``: the SeVa build (the SeVa rows' model and files) on 1 worker and on ``--ray-workers``."""
    import importlib.util
    import json
    import os

    from seva_plugin.pipeline.records import PromptRecord

    args = ctx.args
    if importlib.util.find_spec("ray") is None:
        return Section(["Ray scaling skipped: ray is not installed (make install installs it)"])
    n, tokens = args.ray_prompts, args.new_tokens
    log(f"Ray scaling: {n} prompts, batch {args.ray_batch}, 1 worker (in process) against {args.ray_workers} Ray workers")
    prompts = write_prompts(os.path.join(ctx.root, f"prompts{ctx.image_size}_ray{n}.jsonl"), ctx.images(n), n)

    def ray_config(workers: int, name: str) -> dict:
        cfg = build_config(ctx.model_dir, args.template, prompts, os.path.join(ctx.root, f"build_{name}"), "bench", args.ray_batch, tokens, args.step)
        cfg["ray"] = {"num_workers": workers}
        return cfg

    with open(prompts, encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    warm = (PromptRecord("warm-up", "<image>" + first["question"], [os.path.abspath(first["image"])]), 0)
    ray = run_ray_scaling(ray_config, ctx.loaded, warm, args.ray_repeats, args.ray_workers)
    paired = median([a / b for a, b in zip(ray.local.runs, ray.ray.runs, strict=True)])
    runs = lambda t: " ".join(f"{s:.2f}" for s in t.runs)  # noqa: E731
    lines = [
        f"Ray scaling: {n} prompts, batch {args.ray_batch}, {tokens} tokens per answer; 1 worker = the build in one process, "
        f"{ray.workers} = Ray actors with 1 CPU and 1 torch thread each (fastest of {args.ray_repeats}, interleaved)",
        f"  1 worker {ray.local.best:.2f} s, {ray.workers} Ray workers {ray.ray.best:.2f} s: speedup {ray.speedup:.2f} "
        f"(median of paired {paired:.2f}); data byte-identical: {'yes' if ray.identical else 'NO'}",
        f"  runs (s): 1 worker {runs(ray.local)}; Ray {runs(ray.ray)}; per worker (records/s after its first batch): "
        + ", ".join(f"{r:.0f}" for r in ray.worker_rates),
        f"  not timed: ray.init {ray.startup[0]:.1f} s; starting the workers and loading their models "
        + " ".join(f"{s:.2f}" for s in ray.startup[1:])
        + " s per build",
    ]
    return Section(lines, {"ray_speedup": ray.speedup})


@dataclass
class RayScaling:
    local: Timing = field(default_factory=Timing)
    ray: Timing = field(default_factory=Timing)
    startup: list[float] = field(default_factory=list)  # Ray workers: start + warm-up, not timed
    digests: set = field(default_factory=set)
    workers: int = 2
    batches: int = 0
    worker_rates: list[float] = field(default_factory=list)  # records/s per worker, from the manifest

    @property
    def speedup(self) -> float:
        return self.local.best / self.ray.best

    @property
    def identical(self) -> bool:
        return len(self.digests) == 1


def _warm_workers_factory(started: list[float]):
    """``make_workers`` for the bench: Ray workers that load their model before the build's clock counts."""
    from seva_plugin.pipeline import ray_workers, workers
    from seva_plugin.pipeline.ray_settings import uses_ray

    class WarmRayWorkers(ray_workers.RayWorkers):
        warmup: list = []

        def start(self) -> None:
            import ray

            begin = time.perf_counter()
            super().start()
            if self.warmup:  # one record each: imports, model loading and first-call costs happen here
                ray.get([actor.process.remote(self.warmup) for actor in self.actors])
            started.append(time.perf_counter() - begin)

    def make(spec, work, settings):
        if not uses_ray(settings):
            return workers.LocalWorkers(work)
        return WarmRayWorkers(spec, settings)

    return make, WarmRayWorkers


def run_ray_scaling(cfg_for, loaded, warm_record, repeats: int, workers: int = 2) -> RayScaling:
    """``cfg_for(num_workers, out_name)`` gives the build config; ``loaded`` the bench's loaded backend;
    ``warm_record`` a ``(PromptRecord, seed)`` each Ray worker answers before timing."""
    import ray

    from seva_plugin.pipeline import build as build_module
    from seva_plugin.pipeline.build import Build

    out = RayScaling(workers=workers)
    temp = tempfile.mkdtemp(prefix="sbray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    started: list[float] = []
    make, warm_cls = _warm_workers_factory(started)
    warm_cls.warmup = [warm_record]
    original = build_module.make_workers
    began_ray = time.perf_counter()
    with quiet():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    ray_init = time.perf_counter() - began_ray
    build_module.make_workers = make
    try:
        for _ in range(repeats):
            for n in (1, workers):  # interleaved
                cfg = cfg_for(n, f"ray{n}")
                shutil.rmtree(cfg["output"]["dataset_dir"], ignore_errors=True)
                before = len(started)
                begin = time.perf_counter()
                build = Build(cfg)
                if n == 1:
                    build.backend.share_weights(loaded)
                result = build.run(progress=False)
                seconds = time.perf_counter() - begin
                if n == 1:
                    out.local.runs.append(seconds)
                else:
                    startup = started[before]
                    out.startup.append(startup)
                    out.ray.runs.append(seconds - startup)
                    described = build.workers.describe()
                    out.batches = sum(w["batches"] for w in described["workers"])
                    out.worker_rates = [w["records_per_second"] or 0.0 for w in described["workers"]]
                out.digests.add(sha256(result.data_file))
    finally:
        build_module.make_workers = original
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    out.startup.insert(0, ray_init)  # first entry: ray.init itself
    return out
