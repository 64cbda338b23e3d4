"""``python -m benchmarks.bench``: each strategy against the loop users would otherwise run.

The bench is a list of workloads (``WORKLOADS``), each a module with

- ``add_arguments(parser)``: its own options (optional);
- ``run(ctx) -> Section``: its measurements, given the shared :class:`Context` (the options, the work
  folder, the tiny offline LLaVA, the loaded SeVa model and the JPEG files, each made on first use);
  a ``Section`` is the lines of its part of the report and its figures for the BENCH line.

``--only seva,csr`` runs some of them (default: all); a figure of a workload that did not run is
``nan``. The last line is ``BENCH key=value ...``: the keys of ``BENCH_KEYS`` in that order (the
earlier ones first, so a parser of an earlier bench still reads them). To add a workload: write its
module, add a ``Workload`` line below and its keys to ``BENCH_KEYS``. Timed sections run several
times, interleaved, and the fastest run counts (the machine is shared and noisy: the minimum is the
least disturbed run) with the median of the paired ratios beside; model loading is outside every
timing. See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from benchmarks import common
from benchmarks.common import (  # noqa: F401 - make_images and write_prompts are used by the tests
    Section,
    load_average,
    log,
    machine,
    make_images,
    quiet,
    write_prompts,
)


@dataclass(frozen=True)
class Workload:
    name: str  # what --only names
    module: str  # add_arguments(parser), run(ctx) -> Section
    keys: tuple[str, ...] = ()  # its figures in the BENCH line
    what: str = ""


WORKLOADS = (
    Workload("seva", "benchmarks.seva_speed", ("speedup_vs_sequential", "speedup_vs_chatmodel", "overhead"), "SeVa: builder, official-style loop, ChatModel"),
    Workload("natural", "benchmarks.natural_runs", (), "natural answer lengths, hf and vllm"),
    Workload("ray", "benchmarks.ray_scaling", ("ray_speedup",), "2 Ray workers against 1"),
    Workload("csr", "benchmarks.csr_speed", ("csr_speedup", "csr_vllm_vs_hf"), "CSR: builder against the official-style loop, vllm against hf"),
    Workload("label_free", "benchmarks.label_free", ("stic_speedup", "rlaifv_speedup"), "STIC and RLAIF-V: builder against the official-style loops"),
    Workload("eval", "benchmarks.eval_speed", ("eval_speedup",), "POPE-style probes: seva eval on hf and vllm against one probe at a time"),
    Workload("memory", "benchmarks.memory", ("rss_ratio",), "peak RSS at 20k against 2k records"),
    Workload("augment", "benchmarks.augment", (), "augmentation throughput"),
)
# the BENCH line's order: the first five are the line's keys before issue 25
BENCH_KEYS = (
    *("speedup_vs_sequential", "speedup_vs_chatmodel", "overhead", "rss_ratio", "ray_speedup"),
    *("csr_speedup", "csr_vllm_vs_hf", "stic_speedup", "rlaifv_speedup", "eval_speedup"),
)
FORMATS = {"overhead": ".3f", "rss_ratio": ".3f"}  # else .2f


class Context:
    """What the workloads share, each piece made on first use (``--only csr`` loads no SeVa model)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.root = os.path.abspath(args.out)
        os.makedirs(self.root, exist_ok=True)

    @cached_property
    def tiny(self) -> str:
        """The tiny offline LLaVA twin (head size 16), built once in the work folder."""
        from seva_plugin.dev.tiny_models import build_tiny_llava

        path = os.path.join(self.root, "tiny_llava")
        if not os.path.isfile(os.path.join(path, "config.json")):
            log("building the tiny offline LLaVA")
            with quiet():
                build_tiny_llava(path, seed=0)
        return path

    @cached_property
    def model_dir(self) -> str:
        return os.path.abspath(self.args.model) if self.args.model else self.tiny

    @cached_property
    def loaded(self) -> Any:
        """The SeVa rows' ``hf`` backend on ``model_dir`` (weights loaded on first use of ``hf_model``)."""
        from benchmarks.common import build_config
        from seva_plugin.pipeline.build import Build

        placeholder = write_prompts(os.path.join(self.root, "placeholder.jsonl"), ["unused.jpg"], 1)
        cfg = build_config(self.model_dir, self.args.template, placeholder, os.path.join(self.root, "probe"), "probe", 8, self.args.new_tokens, self.args.step)
        with quiet():
            return Build(cfg).backend

    @cached_property
    def image_size(self) -> int:
        """The side of the JPEG files: ``--image-size``, else twice the model's input side."""
        return self.args.image_size or 2 * common.input_side(self.loaded.renderer.processor)

    def images(self, count: int, size: int | None = None) -> list[str]:
        """``count`` photo-like JPEG files of ``size`` px (default ``image_size``), made once."""
        side = size or self.image_size
        return make_images(os.path.join(self.root, f"images{side}"), count, side)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    names = ", ".join(w.name for w in WORKLOADS)
    p.add_argument("--only", help=f"comma-separated workloads to run (default: all): {names}")
    p.add_argument("--model", help="a LLaVA-style model dir for the SeVa rows (default: build a tiny offline LLaVA)")
    p.add_argument("--template", default="llava", help="LLaMA-Factory template of --model (default: llava)")
    p.add_argument("--out", default="bench_out", help="work folder (default: bench_out)")
    p.add_argument("--image-size", type=int, help="side of the JPEG files (default: twice the model's input side, 64 px for the tiny model)")
    p.add_argument("--step", type=int, default=500, help="diffusion noise step (default: 500)")
    p.add_argument("--new-tokens", type=int, default=64, help="exactly this many new tokens per SeVa answer, every method (default: 64)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every method (default: 1; see docs/performance.md)")
    p.add_argument("--trust-remote-code", action="store_true", help="run the --model folder's own Python (auto_map); off by default, as in LLaMA-Factory")
    p.add_argument("--skip-vllm", action="store_true", help="leave out the vllm rows (natural lengths, CSR)")
    p.add_argument("--skip-memory", action="store_true", help="leave out the memory builds (as --only without memory)")
    p.add_argument("--skip-natural", action="store_true", help="leave out the natural-length builds (as --only without natural)")
    p.add_argument("--skip-ray", action="store_true", help="leave out the Ray scaling builds (as --only without ray)")
    p.add_argument("--skip-csr", action="store_true", help="leave out the CSR rows (as --only without csr)")
    p.add_argument("--skip-label-free", action="store_true", help="leave out STIC and RLAIF-V (as --only without label_free)")
    p.add_argument("--skip-eval", action="store_true", help="leave out the POPE-style probes (as --only without eval)")
    for w in WORKLOADS:
        module = importlib.import_module(w.module)
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
    # internal: one memory build in a subprocess
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--memory-model", help=argparse.SUPPRESS)
    p.add_argument("--prompts-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.workloads = selected(args)
    except ValueError as exc:
        p.error(str(exc))
    return args


def selected(args: argparse.Namespace) -> list[Workload]:
    """The workloads to run, in ``WORKLOADS`` order: ``--only`` (default all), less the ``--skip-*`` ones."""
    known = {w.name: w for w in WORKLOADS}
    wanted = [s.strip() for s in (args.only or "").split(",") if s.strip()] or list(known)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ValueError(f"--only: unknown workload(s) {', '.join(unknown)}; the workloads are {', '.join(known)}")
    skipped = {name for name in ("memory", "natural", "ray", "csr", "label_free", "eval") if getattr(args, f"skip_{name}", False)}
    return [w for w in WORKLOADS if w.name in wanted and w.name not in skipped]


def bench_line(figures: dict[str, float]) -> str:
    """``BENCH key=value ...``: every key of ``BENCH_KEYS`` (``nan`` when its workload did not run), then any other."""
    keys = [*BENCH_KEYS, *(k for k in figures if k not in BENCH_KEYS)]
    values = {k: figures.get(k, math.nan) for k in keys}
    return "BENCH " + " ".join(f"{k}={values[k]:{FORMATS.get(k, '.2f')}}" for k in keys)


def main(argv=None) -> int:
    args = parse_args(argv)
    common.TRUST_REMOTE_CODE = args.trust_remote_code
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.memory_child is not None:
        from benchmarks.memory import memory_child

        memory_child(args)
        return 0

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    started, load_start = time.perf_counter(), load_average()
    ctx = Context(args)
    sections: list[Section] = []
    for w in args.workloads:
        log(f"workload {w.name}: {w.what}")
        try:
            sections.append(importlib.import_module(w.module).run(ctx))
        except Exception as exc:  # noqa: BLE001 - reported in the table (its figures are then nan); the other workloads still count
            message = f"{type(exc).__name__}: {str(exc)[:300]}"
            log(f"workload {w.name} failed: {message}\n{traceback.format_exc()}")
            sections.append(Section([f"workload {w.name} failed: {message}"]))
    lines = [
        "",
        f"seva-plugin bench: workloads {', '.join(w.name for w in args.workloads)}; torch threads {args.threads}",
        f"machine: {machine()}; load average {load_start:.1f} at start, {load_average():.1f} at end",
        f"torch {torch.__version__}, transformers {transformers.__version__}",
    ]
    figures: dict[str, float] = {}
    for section in sections:
        lines += ["", *section.lines]
        figures.update(section.figures)
    lines += ["", f"bench time {time.perf_counter() - started:.0f} s; load average at the end {load_average():.1f}"]
    print("\n".join(lines), flush=True)
    print(bench_line(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
