"""Peak RSS of a cheap build over few and over many source records, each in a fresh process."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time

from benchmarks.common import Section, build_config, log, make_images, quiet, write_prompts

NAME = "memory"
KEYS = ("rss_ratio",)


def add_arguments(p) -> None:
    g = p.add_argument_group("memory")
    g.add_argument("--memory-records", default="2000,20000", help="source sizes of the two memory builds (default: 2000,20000)")
    g.add_argument("--memory-batch", type=int, default=256, help="batch size of the memory builds (default: 256)")


def run(ctx) -> Section:
    """Workload ``memory``: each build in its own process (the tiny model: a cheap configuration)."""
    args = ctx.args
    mem_images = make_images(os.path.join(ctx.root, "images_mem"), 64, 64, seed=1, fmt="png")
    mem = []
    for count in (int(s) for s in args.memory_records.split(",")):
        log(f"memory: a build over {count} source records in a subprocess")
        mem.append(memory_run(ctx.root, ctx.tiny, count, mem_images, args.memory_batch, args.threads))
    lines = [f"memory: cheap builds (tiny model, 64 px PNG files, max_new_tokens=1, batch {args.memory_batch}), one subprocess each:"]
    for m in mem:
        lines.append(
            f"  {m['records']:>6} source records: peak RSS {m['peak_rss_mb']:7.1f} MiB, build {m['seconds']:5.1f} s "
            f"({m['records'] / m['seconds']:.0f} records/s)"
        )
    return Section(lines, {"rss_ratio": mem[-1]["peak_rss_mb"] / mem[0]["peak_rss_mb"]})


def memory_child(args) -> None:
    """Run one cheap build in this (fresh) process and print its peak RSS as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from seva_plugin.pipeline.build import Build

    cfg = build_config(args.memory_model, "llava", args.prompts_file, args.out, "mem", args.memory_batch, 1, 500, fixed=False)
    with quiet():
        build = Build(cfg)
        build.backend.hf_model  # noqa: B018 - load first: the rate below is the build's own
        start = time.perf_counter()
        result = build.run(progress=False)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": seconds, "kept": result.kept, "records": args.memory_child}))


def memory_run(root: str, model: str, records: int, images: list[str], batch: int, threads: int) -> dict:
    folder = os.path.join(root, f"mem{records}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    prompts = write_prompts(os.path.join(folder, "prompts.jsonl"), images, records)
    cmd = [sys.executable, "-m", "benchmarks.bench", "--memory-child", str(records), "--memory-model", model, "--prompts-file", prompts,
           "--out", os.path.join(folder, "data"), "--memory-batch", str(batch), "--threads", str(threads)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LLAMAFACTORY_VERBOSITY": "WARN"})
    if proc.returncode:
        raise RuntimeError(f"memory build over {records} records failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
