"""What the recipe asks of this machine: bf16/fp16/tf32, flash attention, deepspeed, and what output_dir already holds."""

from __future__ import annotations

import importlib.util
import os
import re

from seva_plugin.commands.check_recipe.report import CheckReport


def check_hardware(recipe: dict, report: CheckReport) -> None:
    import torch

    cuda = torch.cuda.is_available()
    use_cpu = bool(recipe.get("use_cpu", False))
    for key in ("bf16", "pure_bf16", "bf16_full_eval"):
        if recipe.get(key):
            if not cuda and not use_cpu:
                report.hint(
                    f"{key}: true, but this machine has no CUDA GPU: here transformers stops with \"Your setup doesn't support "
                    f'bf16/gpu". Fine on a bf16 GPU (Ampere or newer); to try the recipe here add `bf16=false use_cpu=true`.'
                )
            elif cuda:
                from transformers.utils import is_torch_bf16_gpu_available

                if not is_torch_bf16_gpu_available():
                    report.hint(f"{key}: true, but this GPU has no bf16 support (pre-Ampere); use fp16: true instead.")
            break
    if recipe.get("fp16") and not cuda:
        report.hint("fp16: true needs a CUDA GPU; to try the recipe here add `fp16=false use_cpu=true`.")
    if recipe.get("tf32") and not cuda:
        report.hint("tf32: true needs an Ampere or newer GPU; transformers refuses it here. Drop it on other machines.")
    attn = str(recipe.get("flash_attn", "auto"))
    if attn in ("fa2", "fa3"):
        package = "flash_attn" if attn == "fa2" else "flash_attn_interface"
        if not cuda or importlib.util.find_spec(package) is None:
            why = "no CUDA GPU" if not cuda else f"the {package} package is not installed"
            report.hint(f"flash_attn: {attn} cannot run here ({why}); LLaMA-Factory falls back to another attention. Use flash_attn: sdpa (or auto) off CUDA.")
    ds = recipe.get("deepspeed")
    if ds:
        if isinstance(ds, str) and ds.endswith(".json") and not os.path.isfile(ds):
            report.error(f"deepspeed: config file not found: {ds} (resolved against the current directory {os.getcwd()}).")
        if importlib.util.find_spec("deepspeed") is None:
            report.hint(
                "deepspeed is set but the deepspeed package is not installed here; LLaMA-Factory requires it (pip install deepspeed) and launches "
                "with FORCE_TORCHRUN=1."
            )


def check_output(recipe: dict, report: CheckReport) -> None:
    out = recipe.get("output_dir")
    if not out or not os.path.isdir(out) or recipe.get("overwrite_output_dir") or recipe.get("resume_from_checkpoint"):
        return
    steps = [int(m.group(1)) for p in os.listdir(out) if (m := re.fullmatch(r"checkpoint-(\d+)", p)) and os.path.isdir(os.path.join(out, p))]
    if steps:
        report.warn(f"output_dir {out} holds checkpoint-{max(steps)}: LLaMA-Factory will resume from it. Set overwrite_output_dir: true to start over.")
        return
    from llamafactory.extras.constants import CHECKPOINT_NAMES  # what LLaMA-Factory's output_dir check looks for

    if any(os.path.isfile(os.path.join(out, n)) for n in CHECKPOINT_NAMES):
        report.error(
            f'output_dir {out} already holds a trained model: LLaMA-Factory stops with "Output directory already exists and is not empty". Set '
            "overwrite_output_dir: true or choose another output_dir."
        )
