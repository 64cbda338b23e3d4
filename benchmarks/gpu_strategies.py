"""The GPU bench's strategy rows: each registered strategy built on the random-weight model (``gpu.py``).

A strategy that this checkout does not register (``stic`` and ``rlaifv`` before their issues land)
is reported as skipped. Each build answers ``--strategy-records`` records with the strategy's
defaults (CSR: ``mode: repo`` and the tiny CLIP twin, as no hub is reached; CLIP-L's own cost is
one image encoding per record and one short text encoding per proposal). Tokens per second count
the tokens the strategy asked for (a row's tokens before the padding ``generate`` adds once it
ended); the limit beside is ``gpu.bound_tokens_per_s`` at the measured mean rows per ``generate``
call and mean context (prompt, prefix and half the new tokens).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

STRATEGIES = {"csr": {"mode": "repo"}, "stic": {}, "rlaifv": {}}  # name: keys besides the defaults


@dataclass
class StrategyRow:
    name: str
    records: int = 0
    seconds: float = float("nan")
    pairs: int = 0
    calls: int = 0
    rows_per_call: float = float("nan")
    tokens: int = 0
    context: float = float("nan")
    note: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.tokens else float("nan")


class TokenCounter:
    """Wraps ``model.generate`` (an instance attribute, removed on exit): per call the rows, the input
    width and each row's tokens before its trailing padding."""

    def __init__(self, model, pad_id: int):
        self.model, self.pad, self.original = model, pad_id, model.generate
        self.calls: list[tuple[int, int, int, int]] = []  # rows, input width, steps, tokens

    def __enter__(self):
        def generate(*args, **kwargs):
            width = kwargs["input_ids"].shape[1]
            out = self.original(*args, **kwargs)
            new = out[:, width:].tolist()
            tokens = sum(len(row) - next((k for k, t in enumerate(reversed(row)) if t != self.pad), len(row)) for row in new)
            self.calls.append((len(new), width, len(new[0]) if new else 0, tokens))
            return out

        self.model.generate = generate
        return self

    def __exit__(self, *exc):
        del self.model.generate


def registered(name: str) -> bool:
    from seva_plugin.registry import get_registry

    try:
        get_registry().get("strategy", name)
    except Exception:  # noqa: BLE001 - unknown here: the row says so
        return False
    return True


def build_once(cfg: dict, loaded) -> tuple[float, int]:
    """``Build(cfg).run()`` with ``loaded``'s weights: seconds from construction to the manifest, and the pairs kept."""
    import shutil

    import torch

    from seva_plugin.pipeline.build import Build

    shutil.rmtree(cfg["output"]["dataset_dir"], ignore_errors=True)
    start = time.perf_counter()
    build = Build(cfg)
    build.backend.share_weights(loaded)
    result = build.run(progress=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result.kept


def run_strategies(names: list[str], folder: str, loaded, prompts: str, root: str, records: int, tiny: bool) -> list[StrategyRow]:
    """One build per registered strategy of ``names`` on ``loaded``'s model."""
    from benchmarks.common import build_config
    from seva_plugin.dev.tiny_models import build_tiny_clip

    model, renderer = loaded.hf_model, loaded.renderer
    pad = renderer.tokenizer.pad_token_id
    clip = os.path.join(root, "tiny_clip")
    if not os.path.isfile(os.path.join(clip, "config.json")):
        build_tiny_clip(clip, seed=0)
    out = []
    for name in names:
        row = StrategyRow(name, records)
        if not registered(name):
            row.note = "skipped: not registered in this checkout"
            out.append(row)
            continue
        keys = dict(STRATEGIES.get(name, {}))
        if name == "csr":
            keys["clip_model"] = clip
            if tiny:  # a dry run: short sentences and answers
                keys.update(max_sentence_tokens=6, max_response_chars=40)
        cfg = build_config(folder, "llava", prompts, os.path.join(root, f"strategy_{name}"), "gpu", records, 6 if tiny else 128, 500, fixed=False)
        cfg["backend"].update(dtype=loaded.dtype, device=loaded.device)
        cfg.update(strategy={"name": name, **keys}, limit=records, filters=[])
        try:
            with TokenCounter(model, pad) as counter:
                row.seconds, row.pairs = build_once(cfg, loaded)
        except Exception as exc:  # noqa: BLE001 - reported in the table; the other rows still count
            row.note = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            out.append(row)
            continue
        calls = counter.calls
        row.calls = len(calls)
        row.tokens = sum(c[3] for c in calls)
        row.rows_per_call = sum(c[0] for c in calls) / len(calls) if calls else float("nan")
        slots = sum(c[0] * c[2] for c in calls)
        row.context = sum(c[0] * c[2] * (c[1] + c[2] / 2) for c in calls) / slots if slots else float("nan")
        out.append(row)
    return out


def report_lines(rows: list[StrategyRow], bound) -> list[str]:
    """``bound(rows, context)``: the limit in tokens per second at that many rows and mean context."""
    lines = [
        "",
        "strategies (tokens: what each generate call's rows asked for, before padding; limit at the measured rows per call and context):",
        f"{'strategy':<9} {'records':>7} {'seconds':>8} {'pairs':>6} {'calls':>6} {'rows/call':>10} {'context':>8} {'tokens/s':>9} {'limit tok/s':>12} "
        f"{'of limit':>9}",
    ]
    for r in rows:
        if r.note:
            lines.append(f"{r.name:<9} {r.records:>7}  {r.note}")
            continue
        limit = bound(r.rows_per_call, r.context)
        share = r.tokens_per_s / limit if limit == limit and limit > 0 else float("nan")
        lines.append(
            f"{r.name:<9} {r.records:>7} {r.seconds:8.2f} {r.pairs:>6} {r.calls:>6} {r.rows_per_call:10.1f} {r.context:8.0f} {r.tokens_per_s:9.0f} "
            f"{limit:12.0f} {share:9.1%}"
        )
    return lines
