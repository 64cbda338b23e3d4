"""Shared pieces of the benchmarks: inputs (prompts in SeVa's mix, photo-like files), the build
config the bench uses, timing records and the machine description."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import sys
from dataclasses import dataclass, field

# SeVa's prompt mix: OCR-VQA questions (few distinct texts) and TextCaps caption prompts (unique OCR tokens)
# --trust-remote-code: run a --model folder's own Python (auto_map). Off unless asked, as in LLaMA-Factory.
TRUST_REMOTE_CODE = False

OCR_VQA = (
    "Who wrote this book?",
    "What is the title of this book?",
    "What is the genre of this book?",
    "Is this book related to Travel?",
    "Is this a comedy book?",
    "What type of book is this?",
)
OCR_WORDS = "the red book city house street sign road tree car bus cup plate food window door wall floor room sky water dog cat man woman child".split()


def question(i: int) -> str:
    if i % 2 == 0:
        return OCR_VQA[(i // 2) % len(OCR_VQA)]
    words = ", ".join(OCR_WORDS[(i * k + k * k) % len(OCR_WORDS)] for k in range(1, 4))
    return f"Provide a one-sentence caption for the provided image.\nReference OCR token: {words}, {i}"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- inputs ------------------------------------------------------------------------------------
def make_images(folder: str, count: int, size: int, seed: int = 0, fmt: str = "jpg") -> list[str]:
    """``count`` photo-like images (gradient, shapes, a line of text), saved as JPEG (or PNG)."""
    import numpy as np
    from PIL import Image, ImageDraw

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    for i in range(count):
        path = os.path.join(folder, f"img{i:05d}.{fmt}")
        paths.append(path)
        if os.path.exists(path):
            continue
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = (xx * rng.uniform(0.2, 1) + yy * rng.uniform(0.2, 1))[..., None] / 2
        pixels = (a * (1 - t) + b * t + rng.normal(0, 6, (size, size, 3))).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(pixels)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = rng.integers(0, size * 3 // 4, 2)
            w, h = rng.integers(size // 8, size // 3, 2)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
        draw.text((size // 10, size // 10), f"BOOK {i}", fill=(255, 255, 255))
        img.save(path, quality=90) if fmt == "jpg" else img.save(path)
    return paths


def write_prompts(path: str, images: list[str], count: int) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(count):
            row = {"id": f"q{i:06d}", "image": images[i % len(images)], "question": question(i)}
            fh.write(json.dumps(row) + "\n")
    return path


def build_config(
    model: str,
    template: str,
    prompts: str,
    out: str,
    name: str,
    batch_size: int,
    tokens: int,
    step: int,
    *,
    fixed: bool = True,
    backend: str = "hf",
    **backend_keys,
) -> dict:
    """The bench's build: diffusion noise at ``step``, greedy; ``fixed``: exactly ``tokens`` new tokens per answer
    (``min_new_tokens`` too), else answers end at the model's end-of-sequence token (at most ``tokens``)."""
    keys = {"name": backend, "batch_size": batch_size, "max_new_tokens": tokens, **backend_keys}
    if TRUST_REMOTE_CODE:
        keys["trust_remote_code"] = True
    if fixed:
        keys["min_new_tokens"] = tokens
    return {
        "model": model,
        "template": template,
        "source": {"file": prompts},
        "augment": {"name": "diffusion_noise", "step": step},
        "backend": keys,
        "output": {"dataset_dir": out, "name": name, "overwrite": True},
    }


def sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@contextlib.contextmanager
def quiet():
    """Silence third-party chatter on stdout (the table and the BENCH line own it)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@dataclass
class Timing:
    runs: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.runs)


@dataclass
class Section:
    """A bench workload's part of the report and its figures (keys of the BENCH line)."""

    lines: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def input_side(processor, default: int = 336) -> int:
    """The side the model's image processor resizes to (LLaVA: crop_size)."""
    image_processor = getattr(processor, "image_processor", processor)
    for attr, key in (("crop_size", "height"), ("size", "shortest_edge"), ("size", "height")):
        value = getattr(image_processor, attr, None)
        value = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
        if value:
            return int(value)
    return default


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def fmt_mean(values) -> str:
    values = list(values)
    return f"{sum(values) / len(values):.1f}" if values else "-"
