"""``python -m benchmarks.profile_build``: where a build's generating thread spends its time, outside ``generate``.

The builder's own work that is not hidden behind generation runs on the generating (main)
thread: waiting for the prefetch thread, padding the batch, decoding the answers, the strategy's
bookkeeping and filters, the journal (one write and ``fsync`` per batch), and once per build the
writer, the rejects and the manifest. This profiles one build of the tiny model with ``cProfile``
(which sees the main thread only; the prefetch thread's decoding and preparing overlap
generation) and prints those parts per build and per batch. Profiling slows Python code, so the
shares are upper bounds; ``make bench``'s overhead figure is the unprofiled truth.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys

from benchmarks.common import build_config, make_images, quiet, write_prompts
from benchmarks.methods import run_builder

PARTS = (  # (label, file suffix, function name)
    ("model.generate (transformers)", "transformers/generation/utils.py", "generate"),
    ("waiting for the prefetch thread", "seva_plugin/pipeline/prefetch.py", "prefetch"),
    ("padding the batch (batch_inputs)", "seva_plugin/plugins/backends/hf_inputs.py", "batch_inputs"),
    ("inputs made on this thread (model_inputs)", "seva_plugin/plugins/backends/hf.py", "model_inputs"),
    ("decoding the answers (Renderer.completion)", "seva_plugin/rendering.py", "completion"),
    ("journal append (json, write, fsync)", "seva_plugin/pipeline/journal.py", "append"),
    ("writer, rejects, manifest (_finalize)", "seva_plugin/pipeline/build.py", "_finalize"),
    ("Build() construction", "seva_plugin/pipeline/build.py", "__init__"),
)


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float | None:
    """Cumulative seconds of ``name`` in the file ending with ``suffix``; None if this thread never ran it."""
    found = [v[3] for (path, _, func), v in stats.stats.items() if path.endswith(suffix) and func == name]
    return sum(found) if found else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_build", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_out", help="work folder (default: bench_out)")
    p.add_argument("--prompts", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=64)
    args = p.parse_args(argv)
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    import torch

    torch.set_num_threads(1)
    from seva_plugin.dev.tiny_models import build_tiny_llava
    from seva_plugin.pipeline.build import Build

    root = os.path.abspath(args.out)
    model = os.path.join(root, "tiny_llava")
    if not os.path.isfile(os.path.join(model, "config.json")):
        with quiet():
            build_tiny_llava(model, seed=0)
    images = make_images(os.path.join(root, "images64"), args.prompts, 64)
    prompts = write_prompts(os.path.join(root, f"profile{args.prompts}.jsonl"), images, args.prompts)
    cfg = build_config(model, "llava", prompts, os.path.join(root, "build_profile"), "profile", args.batch_size, args.new_tokens, 500)
    with quiet():
        loaded = Build(cfg).backend
        loaded.hf_model  # noqa: B018 - loaded before the profile
    run_builder(cfg, loaded)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    seconds = run_builder(cfg, loaded)[0]
    profiler.disable()
    stats = pstats.Stats(profiler)
    batches = -(-args.prompts // args.batch_size)
    print(f"one build: {args.prompts} prompts, batch {args.batch_size} ({batches} batches), {args.new_tokens} tokens; {seconds:.2f} s profiled")
    print(f"{'main thread':<44} {'s per build':>12} {'ms per batch':>13} {'share':>7}")
    for label, suffix, name in PARTS:
        t = cumulative(stats, suffix, name)
        if t is None:  # not "costs nothing": it ran elsewhere (the prefetch thread) or was renamed
            print(f"{label:<44} {'not run on this thread':>34} ({suffix}:{name})")
            continue
        print(f"{label:<44} {t:12.3f} {1000 * t / batches:13.1f} {t / seconds:7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
