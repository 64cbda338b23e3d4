"""``seva demo``: SeVa end to end on a laptop CPU, with ground truth to score it.

1. draw the shapes world; 2. build a tiny random LLaVA offline; 3. teach it the world with
``llamafactory-cli train`` (stage sft); 4. measure it on held-out images, clean and noised;
5. build SeVa pairs on the unlabeled images with the real pipeline; 6. train DPO with
``llamafactory-cli train``; 7. measure again and print a report computed from these runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from seva_plugin import resources
from seva_plugin.commands.host import llamafactory_cli
from seva_plugin.errors import NothingKept, SevaError
from seva_plugin.pipeline.dataset_files import DatasetFiles

SFT_RECIPE = resources.path("recipes", "demo_sft_cpu.yaml")  # shipped with the package
DPO_RECIPE = resources.path("recipes", "demo_dpo_cpu.yaml")
BUILD_CONFIGS = {strategy: resources.path("data_templates", f"demo_{strategy}.yaml") for strategy in ("seva", "stic", "rlaifv")}
NOISE_STEPS = (0, 200, 500, 800, 900, 999)
IMAGE_SIZE = 48  # the tiny model sees 48x48 pixels in 8x8 patches (36 image tokens)
POSITION_STD = 0.5  # see prepare_base_model
HEADS = 2  # the language model's attention heads, 32 wide: vLLM's CPU attention runs 32 and up, not the twin's default 16

# ``small`` is a shrunken run for tests: the same steps on fewer images (about 200 SFT steps).
SIZES: dict[str, dict[str, Any]] = {
    "full": {"n_sft": 600, "n_unlabeled": 300, "n_heldout": 150, "sft_overrides": {}},
    "small": {"n_sft": 150, "n_unlabeled": 60, "n_heldout": 30, "sft_overrides": {"num_train_epochs": 12}},
}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def llamafactory_train(recipe: Path, overrides: dict, output_dir: str, log_path: str, desc: str) -> None:
    """Run ``llamafactory-cli train`` (the one next to this Python), with a progress bar read from
    the trainer's own ``trainer_log.jsonl``; the full output goes to ``log_path``."""
    from tqdm.auto import tqdm

    cmd = [llamafactory_cli(), "train", str(recipe), *(f"{k}={v}" for k, v in overrides.items()), f"output_dir={output_dir}"]
    progress = os.path.join(output_dir, "trainer_log.jsonl")
    if os.path.exists(progress):
        os.unlink(progress)
    # one thread: with ops this small, thread start-up costs more than it saves (5x faster here)
    env = {**os.environ, "LLAMAFACTORY_VERBOSITY": "WARN", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    with open(log_path, "w", encoding="utf-8") as log, tqdm(desc=desc, unit="step", leave=False) as bar:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            time.sleep(0.5)
            _update_bar(bar, progress)
        _update_bar(bar, progress)
    if proc.returncode != 0:
        tail = "".join(open(log_path, encoding="utf-8", errors="replace").readlines()[-15:])
        raise SevaError(f"llamafactory-cli train failed (exit {proc.returncode}); full log: {log_path}\n{tail}")


def _update_bar(bar, path: str) -> None:
    """Move the bar to the trainer's last logged step (redraw only on change: logs stay short)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        last = json.loads(lines[-1])
    except (OSError, IndexError, json.JSONDecodeError):
        return
    if last.get("current_steps") == bar.n:
        return
    bar.total = last.get("total_steps", bar.total)
    bar.n = last.get("current_steps", bar.n)
    if "loss" in last:
        bar.set_postfix(loss=last["loss"], refresh=False)
    bar.refresh()


def prepare_base_model(out_dir: str, seed: int) -> str:
    """A tiny random LLaVA that can learn where things are within a few hundred steps.

    CLIP initialises its position embeddings with std 0.02, far below what its patch
    embeddings output for these images (about 0.5), so a tower trained from scratch barely
    knows where a patch lies, and "left or right" stayed at chance after 1500 steps here.
    Position embeddings of std 0.5 (a pretrained CLIP's are informative too) let SFT learn
    position in about 200 steps.
    """
    import torch
    from transformers import AutoConfig, LlavaForConditionalGeneration

    from seva_plugin.commands.demo.world import VOCAB
    from seva_plugin.dev.tiny_models import build_tiny_llava

    # the plain files, 64 wide in 4 heads of 16: float32 weights (the real checkpoint's float16 would slow
    # the CPU training from scratch)
    path = build_tiny_llava(out_dir, seed=seed, image_size=IMAGE_SIZE, patch_size=8, vocab=VOCAB, real_files=False)
    # the same 64 as 2 heads of 32 (the weights' shapes do not change), so that backend.name=vllm runs
    # it on CPU too; 4 heads of 32 (128 wide) took 40% longer to teach and learnt shapes worse in 700 steps
    config = AutoConfig.from_pretrained(path)
    text = config.text_config
    text.num_attention_heads = text.num_key_value_heads = HEADS
    text.head_dim = text.hidden_size // HEADS
    model = LlavaForConditionalGeneration.from_pretrained(path, config=config)
    tower = model.model.vision_tower  # CLIPVisionModel: transformers 5.5 wraps its layers in vision_model, 5.6 does not
    weight = getattr(tower, "vision_model", tower).embeddings.position_embedding.weight
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed)) * POSITION_STD)
    model.save_pretrained(path)
    return path


def run_demo(out_dir: str = "demo_out", small: bool = False, seed: int = 0, strategy: str = "seva") -> dict:
    """Run the whole demo in ``out_dir``, print the report, and return its figures."""
    import torch

    if strategy not in BUILD_CONFIGS:
        raise SevaError(f"the demo runs strategy seva, stic or rlaifv, not {strategy!r}.")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread generates faster (see llamafactory_train)
    try:
        return _run_demo(out_dir, small, seed, strategy)
    finally:
        torch.set_num_threads(threads)


def _run_demo(out_dir: str, small: bool, seed: int, strategy: str = "seva") -> dict:
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file "Loading weights" bars; the demo shows its own

    from seva_plugin import api
    from seva_plugin.commands.demo import pope
    from seva_plugin.commands.demo import report as rep
    from seva_plugin.commands.demo.evaluate import answers
    from seva_plugin.commands.demo.world import make_world, truth_table, write_prompts, write_sft_dataset
    from seva_plugin.interfaces import CLEAN, View
    from seva_plugin.pipeline.config import load_config
    from seva_plugin.plugins.backends.hf import HfBackend

    build_config = BUILD_CONFIGS[strategy]
    for path in (SFT_RECIPE, DPO_RECIPE, build_config):
        if not path.is_file():
            raise SevaError(f"{path} not found: the package is installed without its recipes; reinstall seva-plugin.")
    size = SIZES["small" if small else "full"]
    out = os.path.abspath(out_dir)
    data_dir, logs = os.path.join(out, "data"), os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    seconds: dict[str, float] = {}
    clock = time.time()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = time.time() - clock
        clock = time.time()

    _say(f"[1/6] drawing the shapes world in {out}/world (seed {seed})")
    world = make_world(os.path.join(out, "world"), seed=seed, n_sft=size["n_sft"], n_unlabeled=size["n_unlabeled"], n_heldout=size["n_heldout"])
    truth = truth_table(world)
    _say("[2/6] building a tiny random LLaVA offline")
    base = prepare_base_model(os.path.join(out, "tiny_llava"), seed)
    lap("setup")

    sft_dir = os.path.join(out, "sft")
    _say(f"[3/6] teaching it the world: llamafactory-cli train {SFT_RECIPE.name} ({len(world.sft)} questions; log in {logs}/sft.log)")
    write_sft_dataset(world.sft, data_dir, "demo_sft")
    sft_overrides = {"model_name_or_path": base, "dataset_dir": data_dir, "dataset": "demo_sft", "seed": seed, **size["sft_overrides"]}
    llamafactory_train(SFT_RECIPE, sft_overrides, sft_dir, os.path.join(logs, "sft.log"), "sft")
    lap("sft")

    prompts = write_prompts(world.unlabeled, os.path.join(out, "unlabeled.jsonl"))
    config = load_config(str(build_config), [f"model={sft_dir}", f"source.file={prompts}", f"output.dataset_dir={data_dir}", f"seed={seed}"])
    step = config.augment["step"]
    steps = sorted({*NOISE_STEPS, step})
    _say(f"[4/6] asking the SFT model {len(world.heldout)} held-out questions, clean and noised at t={', '.join(map(str, steps[1:]))}")
    # one view id for every noise step: the same per-record noise draw, before and after DPO
    views = [CLEAN if t == 0 else View(1, api.augmenter("diffusion_noise", step=t)) for t in steps]
    before_answers = answers(HfBackend(model=sft_dir, template="llava", max_new_tokens=8), world.heldout, views, seed, desc="evaluate")
    lap("evaluate before")

    _say(f"[5/6] building {strategy} pairs on {len(world.unlabeled)} unlabeled prompts with seva_plugin.pipeline.build.build")
    files = DatasetFiles(data_dir, config.output["name"])
    if os.path.exists(files.journal):  # a rerun's SFT model is new: never resume the last run's pairs
        os.unlink(files.journal)
    try:
        result = api.build(config, progress=True)
    except NothingKept as exc:  # reported below, as the demo's finding
        result = exc.result
    journal = list(files.journal_entries())
    lap("build pairs")

    dpo_dir = os.path.join(out, "dpo_adapter")
    if result.kept:
        _say(f"[6/6] DPO on the {result.kept} kept pairs: llamafactory-cli train {DPO_RECIPE.name} (log in {logs}/dpo.log)")
        dpo_overrides = {"model_name_or_path": sft_dir, "dataset_dir": data_dir, "dataset": result.name, "template": "llava", "seed": seed}
        llamafactory_train(DPO_RECIPE, dpo_overrides, dpo_dir, os.path.join(logs, "dpo.log"), "dpo")
        lap("dpo")
        after = HfBackend(model=sft_dir, template="llava", max_new_tokens=8, adapter=dpo_dir)
        after_answers = answers(after, world.heldout, [CLEAN, views[steps.index(step)]], seed, desc="evaluate")
        lap("evaluate after")
    else:  # nothing to train on: the model is its own "after"
        _say("[6/6] no pairs were kept, so there is nothing to train DPO on; skipped")
        after_answers = [before_answers[0], before_answers[steps.index(step)]]
    _say("POPE-style probes on the held-out images, before and after DPO, with seva eval")
    pope_figures = pope.before_after(out, sft_dir, dpo_dir if result.kept else None, world.heldout, seed)
    lap("pope probes")

    report: dict[str, Any] = {
        "seed": seed,
        "strategy": strategy,
        "sizes": {"sft": len(world.sft), "unlabeled": len(world.unlabeled), "heldout": len(world.heldout)},
        "noise": {"steps": steps, "accuracy": [rep.accuracy_by_kind(world.heldout, a) for a in before_answers]},
        "pairs": {
            "step": step,
            "prompts": len(world.unlabeled),
            "kept": result.kept,
            "dropped": result.dropped,
            "rejected": result.rejected,
            "precision": rep.pair_precision(journal, truth),
        },
        "resemblance": rep.error_resemblance(world.heldout, before_answers[0], journal, truth),
        "dpo": {
            "before": rep.accuracy_by_kind(world.heldout, before_answers[0]),
            "after": rep.accuracy_by_kind(world.heldout, after_answers[0]),
            "before_noised": rep.accuracy_by_kind(world.heldout, before_answers[steps.index(step)]),
            "after_noised": rep.accuracy_by_kind(world.heldout, after_answers[1]),
            **rep.changes(world.heldout, before_answers[0], after_answers[0]),
        },
        "pope": pope_figures,
        "recipes": {"sft": SFT_RECIPE.name, "dpo": DPO_RECIPE.name},
        "paths": {
            "sft": sft_dir,
            "adapter": dpo_dir if result.kept else None,
            "pairs": result.data_file,
            "data_dir": data_dir,
            "name": result.name,
            "report": os.path.join(out, "report.json"),
        },
        "seconds": seconds,
    }
    with open(report["paths"]["report"], "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    text = rep.format_report(report)
    with open(os.path.join(out, "report.txt"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    print(text, flush=True)
    _say("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()) + f"; total {sum(seconds.values()):.0f}s")
    return report
