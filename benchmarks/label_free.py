"""The label-free strategies against official-code-style loops: ``stic_speedup`` and ``rlaifv_speedup``.

One loaded tiny LLaVA (plain transformers, float32, one thread), the same prompts, and exactly
``--lf-tokens`` new tokens for every generation on both sides (``min_new_tokens``), so both do the
same work:

- **STIC**: the builder (``strategy: stic``, source ``images``, ``hf`` batched, the journal and writer
  included) against the loop of the official ``stic/generate_pref.py``: per image, ``processor`` then
  ``model.generate`` for the step-by-step prompt, then for the negative (a hallucination prompt, or the
  description prompt on a ``T.Resize(20)`` / ``T.ColorJitter`` image), one prompt at a time, sampled at
  temperature 0.2. Every image gives one pair on both sides (no filter).
- **RLAIF-V**: the builder (``strategy: rlaifv``, the official prompts: model-made claims and questions)
  against the official pipeline as one loop per prompt: its ``num_samples`` answers in one ``generate``
  (the official script batches a prompt's repeats), then per answer one ``generate`` to divide it into
  claims and one to turn them into questions (the official Llama-3 helpers, here the policy with the
  image, as the strategy asks them), then one forward per probe for P(yes/Yes/no/No) (the official
  labeler's batch size 1). A random twin's verdicts are all equal, so neither side keeps pairs: the
  speedup is the ratio of prompts per second at equal work per prompt, which is the ratio of pairs per
  second at equal pairs per prompt.

Each is timed ``--lf-repeats`` times, interleaved; the fastest run counts. Model loading is outside
every timing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field

from benchmarks.common import Section, Timing, log, make_images, quiet
from benchmarks.methods import share_loaded


@dataclass
class LabelFree:
    prompts: dict[str, int]
    tokens: int
    samples: int
    builder: dict[str, Timing] = field(default_factory=lambda: {"stic": Timing(), "rlaifv": Timing()})
    loop: dict[str, Timing] = field(default_factory=lambda: {"stic": Timing(), "rlaifv": Timing()})
    pairs: dict[str, int] = field(default_factory=dict)
    probes: dict[str, int] = field(default_factory=dict)  # RLAIF-V's yes/no probes asked, builder and loop (the work that depends on the claims)

    def speedup(self, strategy: str) -> float:
        return self.loop[strategy].best / self.builder[strategy].best

    def lines(self) -> list[str]:
        out = [
            "",
            f"label-free strategies: exactly {self.tokens} new tokens per generation, RLAIF-V {self.samples} answers a prompt "
            "(fastest of the interleaved runs):",
        ]
        for s, name in (("stic", "STIC"), ("rlaifv", "RLAIF-V")):
            b, lo, n = self.builder[s].best, self.loop[s].best, self.prompts[s]
            out.append(
                f"  {name:<8} {n} prompts: builder {b:7.2f} s ({n / b:6.2f} prompts/s, {self.pairs.get(s, 0)} pairs), official-style loop {lo:7.2f} s "
                f"({n / lo:6.2f} prompts/s): speedup {self.speedup(s):.2f}"
            )
        out.append(f"  RLAIF-V yes/no probes asked (claims found): builder {self.probes.get('builder', 0)}, loop {self.probes.get('loop', 0)} (last run)")
        return out


def add_arguments(p) -> None:
    g = p.add_argument_group("label_free")
    g.add_argument("--lf-prompts", type=int, default=128, help="images of the STIC builds (default: 128)")
    g.add_argument("--lf-rlaifv-prompts", type=int, default=24, help="prompts of the RLAIF-V builds (default: 24)")
    g.add_argument("--lf-tokens", type=int, default=64, help="exactly this many new tokens per generation (default: 64, as the SeVa rows)")
    g.add_argument("--lf-samples", type=int, default=10, help="RLAIF-V answers per prompt (default: 10, the official value)")
    g.add_argument("--lf-batch", type=int, default=64, help="records per STIC batch; RLAIF-V takes a quarter, 10 answers each (default: 64)")
    g.add_argument("--lf-repeats", type=int, default=2, help="runs of each label-free measurement, interleaved; the fastest counts (default: 2)")


def run(ctx) -> Section:
    """Workload ``label_free`` of ``benchmarks.bench``: figures ``stic_speedup`` and ``rlaifv_speedup``."""
    result = run_label_free(ctx.args, ctx.root)
    return Section(result.lines()[1:], {"stic_speedup": result.speedup("stic"), "rlaifv_speedup": result.speedup("rlaifv")})


def build_config(model: str, source: dict, out: str, strategy: dict, batch: int, tokens: int) -> dict:
    keys = {"name": "hf", "batch_size": batch, "max_new_tokens": tokens, "min_new_tokens": tokens, "dtype": "float32"}
    output = {"dataset_dir": out, "name": "lf", "overwrite": True}
    return {"model": model, "template": "llava", "source": source, "strategy": strategy, "backend": keys, "filters": [], "output": output}


def run_label_free(args, root: str) -> LabelFree:
    import torch

    from seva_plugin.dev.tiny_models import build_tiny_llava
    from seva_plugin.pipeline.build import Build
    from seva_plugin.plugins.strategies.stic import prompts as stic_prompts

    model_dir = os.path.join(root, "lf_tiny_llava")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        with quiet():
            build_tiny_llava(model_dir, seed=0)
    counts = {"stic": args.lf_prompts, "rlaifv": args.lf_rlaifv_prompts}
    tokens, samples = args.lf_tokens, args.lf_samples
    images = make_images(os.path.join(root, f"lf_images{counts['stic']}"), counts["stic"], 64)
    asked = make_images(os.path.join(root, f"lf_images{counts['rlaifv']}"), counts["rlaifv"], 64)
    prompts = os.path.join(root, "lf_prompts.jsonl")
    with open(prompts, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"id": f"p{i:04d}", "image": p, "question": "Describe the image in detail."}) + "\n" for i, p in enumerate(asked))
    stic = {"name": "stic", "max_new_tokens": tokens}
    rlaifv = {"name": "rlaifv", "num_samples": samples, "max_new_tokens": tokens, "feedback_max_new_tokens": tokens, "max_rows": 160}
    configs = {
        "stic": build_config(model_dir, {"name": "images", "dir": os.path.dirname(images[0])}, os.path.join(root, "lf_stic"), stic, args.lf_batch, tokens),
        "rlaifv": build_config(model_dir, {"file": prompts}, os.path.join(root, "lf_rlaifv"), rlaifv, max(1, args.lf_batch // 4), tokens),
    }
    with quiet():
        loaded = Build(configs["stic"]).backend
        model, renderer = loaded.hf_model, loaded.renderer
    torch.set_num_threads(args.threads)
    loops = {"stic": lambda: stic_loop(model, renderer, images, tokens, stic_prompts), "rlaifv": lambda: rlaifv_loop(model, renderer, asked, tokens, samples)}
    out = LabelFree(counts, tokens, samples)
    for rep in range(args.lf_repeats):
        for strategy in ("stic", "rlaifv"):
            log(f"label-free: {strategy} builder and official-style loop, round {rep + 1}/{args.lf_repeats}")
            cfg = configs[strategy]
            shutil.rmtree(cfg["output"]["dataset_dir"], ignore_errors=True)
            start = time.perf_counter()
            build = Build(cfg)
            share_loaded(build, loaded)
            probes = count_probes(build.backend, len(rlaifv_words()))
            out.pairs[strategy] = pairs_of(build)
            if strategy == "rlaifv":
                out.probes["builder"] = probes()
            out.builder[strategy].runs.append(time.perf_counter() - start)
            start = time.perf_counter()
            loop_probes = loops[strategy]()
            out.loop[strategy].runs.append(time.perf_counter() - start)
            if strategy == "rlaifv":
                out.probes["loop"] = loop_probes
    return out


def rlaifv_words() -> list[str]:
    from seva_plugin.plugins.strategies.rlaifv.strategy import Rlaifv

    return [*Rlaifv().yes_words, *Rlaifv().no_words]


def count_probes(backend, words: int):
    """Count the texts ``backend`` scores (``words`` per probe); returns a function giving the probes so far."""
    scored = [0]
    score = backend.score

    def counting(requests):
        scored[0] += len(requests)
        return score(requests)

    backend.score = counting
    return lambda: scored[0] // words


def pairs_of(build) -> int:
    """Run ``build``; its pairs (none when every record is dropped as no_pair: a random twin's verdicts are all equal)."""
    from seva_plugin.errors import NothingKept

    try:
        return build.run(progress=False).kept
    except NothingKept:
        return 0


def _generate(model, renderer, text: str, images: list, tokens: int, **sampling):
    """The official scripts' call: the template's prompt text through the processor, then ``generate``."""
    import torch

    tokenizer, template = renderer.tokenizer, renderer.template
    ids, _ = template.encode_oneturn(tokenizer, [{"role": "user", "content": text}, {"role": "assistant", "content": ""}], None, None)
    inputs = renderer.processor(images=images, text=tokenizer.decode(ids, skip_special_tokens=False), return_tensors="pt", add_special_tokens=False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=pad, **sampling)
    if sampling.get("return_dict_in_generate"):
        return out
    return [tokenizer.decode(row[inputs["input_ids"].shape[1] :], skip_special_tokens=True) for row in out]


def stic_loop(model, renderer, images: list[str], tokens: int, p) -> None:
    """``generate_pref.py``: per image, the detailed prompt, then a hallucination prompt or a corrupted image."""
    import torchvision.transforms as T
    from PIL import Image

    rng = random.Random(42)
    for path in images:
        image = Image.open(path).convert("RGB")
        _generate(model, renderer, "<image>\n" + p.DETAILED_PROMPT, [image], tokens, do_sample=True, temperature=0.2)
        prompt = rng.choice(p.DESCRIPTION_PROMPTS)
        if rng.random() > 0.5:
            _generate(model, renderer, "<image>\n" + rng.choice(p.HALLUCINATION_PROMPTS), [image], tokens, do_sample=True, temperature=0.2)
        else:
            corrupted = T.Resize(size=20)(image) if rng.random() > 0.5 else T.ColorJitter(brightness=0.5, hue=0.3)(image)
            _generate(model, renderer, "<image>\n" + prompt, [corrupted], tokens, do_sample=True, temperature=0.2)


def rlaifv_loop(model, renderer, images: list[str], tokens: int, samples: int) -> int:
    """The official pipeline, one prompt at a time: answers, then per answer divide, questions, probes."""
    import torch
    from PIL import Image

    from seva_plugin.plugins.strategies.rlaifv import prompts as P

    tokenizer = renderer.tokenizer
    words = [tokenizer.encode(w, add_special_tokens=False)[-1] for w in ("yes", "Yes", "no", "No")]
    feedback = {"do_sample": True, "temperature": 0.2, "top_p": 0.9}
    probes = 0
    for path in images:
        image = Image.open(path).convert("RGB")
        question = "Describe the image in detail."
        answers = _generate(model, renderer, "<image>" + question, [image], tokens, do_sample=True, temperature=0.7, num_return_sequences=samples)
        for answer in answers:
            (claims,) = _generate(model, renderer, "<image>\n" + P.divide_prompt(question, answer), [image], tokens, **feedback)
            claims = P.parse_list(claims)
            if not claims:
                continue
            (asked,) = _generate(model, renderer, "<image>\n" + P.to_question_prompt(claims), [image], tokens, **feedback)
            for q in P.parse_list(asked):  # the labeler: one greedy token, its scores softmaxed (official --is_yesno)
                out = _generate(model, renderer, "<image>\n" + P.probe(q), [image], 1, do_sample=False, output_scores=True, return_dict_in_generate=True)
                probs = torch.softmax(out.scores[0][0].float(), dim=-1)
                float(probs[words[0]] + probs[words[1]] > probs[words[2]] + probs[words[3]])
                probes += 1
    return probes
