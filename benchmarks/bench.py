"""``python -m benchmarks.bench``: the builder against the loops users would otherwise run.

One process, one model, the same prompts (clean and augmented view of each) and the same fixed
number of new tokens (``min_new_tokens = max_new_tokens = N``, so no method can win by stopping
early) for:

1. the builder: ``Build(config).run()`` with backend ``hf`` (journal, writer and all) on real JPEG
   files, at each batch size of a small sweep; the best one is reported;
2. the official-style loop: one prompt at a time, ``processor(images=..., text=...)`` then
   ``model.generate``, the augmented view noising the processed pixel tensor;
3. LLaMA-Factory's ``ChatModel`` (huggingface engine), one ``chat`` call per prompt and view;
4. bare batched ``model.generate`` on batches processed beforehand (the floor for the builder);
5. peak RSS of a cheap build over 2k against 20k source records, each in its own subprocess;
6. augmentation throughput of ``diffusion_noise`` and ``moco`` at 336 px.

It prints a table, then as its last line
``BENCH speedup_vs_sequential=X speedup_vs_chatmodel=Y overhead=Z rss_ratio=W``.
Timed sections run ``--repeats`` times, interleaved, and the fastest run counts (the machine this
was written on is shared and noisy; the minimum is the least disturbed run). Model loading is
outside every timing. See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

# SeVa's prompt mix: OCR-VQA questions (few distinct texts) and TextCaps caption prompts (unique OCR tokens)
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


def build_config(model: str, template: str, prompts: str, out: str, name: str, batch_size: int, tokens: int, step: int) -> dict:
    return {
        "model": model,
        "template": template,
        "source": {"file": prompts},
        "augment": {"name": "diffusion_noise", "step": step},
        "backend": {"name": "hf", "batch_size": batch_size, "max_new_tokens": tokens, "min_new_tokens": tokens},
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


# -- the methods -------------------------------------------------------------------------------
@dataclass
class Timing:
    runs: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.runs)


def run_builder(cfg: dict, loaded_backend) -> tuple[float, str]:
    """``Build(cfg).run()`` timed from construction to the manifest; the model is already loaded."""
    from seva_plugin.build.pipeline import Build

    shutil.rmtree(cfg["output"]["dataset_dir"], ignore_errors=True)
    start = time.perf_counter()
    build = Build(cfg)
    build.backend.share_weights(loaded_backend)  # model loading is outside every timing
    result = build.run(progress=False)
    seconds = time.perf_counter() - start
    return seconds, sha256(result.data_file)


def prepared_batches(backend, augmenter, records, batch_size: int) -> list[dict]:
    """The builder's own model inputs for every batch (clean + augmented), made before timing."""
    from seva_plugin.interfaces import CLEAN, GenerationRequest, View

    views = [CLEAN, View(1, augmenter)]
    out = []
    for i in range(0, len(records), batch_size):
        ids, _, mm = backend.model_inputs([GenerationRequest(r, v) for v in views for r in records[i : i + batch_size]])
        out.append(backend.batch_inputs(ids, mm))
    return out


def run_bare(model, batches: list[dict], gen_kwargs: dict) -> float:
    """Only ``model.generate`` on ready batches: the floor under the builder's time."""
    import torch

    seconds = 0.0
    with torch.inference_mode():
        for inputs in batches:
            start = time.perf_counter()
            model.generate(**inputs, **gen_kwargs)
            seconds += time.perf_counter() - start
    return seconds


def run_sequential(model, processor, augmenter, rows: list[dict], texts: list[str], tokens: int, pad_id: int, eos_ids) -> float:
    """The official SeVa loop: per prompt, open the image, then per view processor + generate."""
    import torch
    from PIL import Image

    from seva_plugin.build.views import record_seed
    from seva_plugin.build.views import view_generator

    start = time.perf_counter()
    with torch.inference_mode():
        for row, text in zip(rows, texts, strict=True):
            image = Image.open(row["image"]).convert("RGB")
            for view in (0, 1):
                inputs = processor(images=[image], text=text, return_tensors="pt", add_special_tokens=False)
                if view:
                    inputs["pixel_values"] = augmenter(inputs["pixel_values"], view_generator(record_seed(0, row["id"]), 1, 0))
                inputs = {k: v.to(model.device, model.dtype) if torch.is_floating_point(v) else v.to(model.device) for k, v in inputs.items()}
                out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=pad_id, eos_token_id=eos_ids)
                processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return time.perf_counter() - start


def run_chatmodel(model_dir: str, template: str, rows: list[dict], tokens: int) -> tuple[float, int]:
    """LLaMA-Factory's ChatModel, huggingface engine, one ``chat`` call per prompt and view.

    ``chat`` takes images, not pixel tensors, so the augmented view passes the same image again:
    this measures the per-call cost of the loop a user would write around ChatModel."""
    from llamafactory.chat import ChatModel

    with quiet():
        chat = ChatModel(
            {"model_name_or_path": model_dir, "template": template, "infer_backend": "huggingface", "infer_dtype": "float32", "trust_remote_code": True}
        )
    chat.engine.generating_args["min_new_tokens"] = tokens  # GeneratingArguments has no such key; GenerationConfig has
    lengths = 0
    try:
        start = time.perf_counter()
        for row in rows:
            for _view in (0, 1):
                messages = [{"role": "user", "content": "<image>" + row["question"]}]
                (response,) = chat.chat(messages, images=[row["image"]], max_new_tokens=tokens, do_sample=False)
                lengths += response.response_length
        seconds = time.perf_counter() - start
    finally:
        chat._loop.call_soon_threadsafe(chat._loop.stop)
        del chat
    return seconds, lengths


def augment_throughput(size: int, images: list[str], seconds: float = 1.5) -> dict[str, float]:
    """Images per second at ``size`` px: diffusion noise on processor-shaped tensors, moco on PIL images."""
    import torch
    from PIL import Image

    from seva_plugin.plugins.augmenters.diffusion_noise import DiffusionNoise
    from seva_plugin.plugins.augmenters.moco import Moco
    from seva_plugin.build.views import view_generator

    pils = [Image.open(p).convert("RGB").resize((size, size)) for p in images]
    pixels = torch.randn(len(pils), 3, size, size, generator=torch.Generator().manual_seed(0))
    noise, moco = DiffusionNoise(step=500), Moco()

    def rate(fn, n_items: int) -> float:
        fn()  # warm-up
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            fn()
            best = max(best, n_items / (time.perf_counter() - start))
        return best

    out = {}
    out["diffusion_noise"] = rate(lambda: [noise(pixels[i : i + 1], view_generator(i, 1, 0)) for i in range(len(pils))], len(pils))
    out["moco"] = rate(lambda: [moco(img, view_generator(i, 1, 0)) for i, img in enumerate(pils)], len(pils))
    return out


# -- memory ------------------------------------------------------------------------------------
def memory_child(args) -> None:
    """Run one cheap build in this (fresh) process and print its peak RSS as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from seva_plugin.build.pipeline import Build

    cfg = build_config(args.memory_model, "llava", args.prompts_file, args.out, "mem", args.memory_batch, 1, 500)
    cfg["backend"]["min_new_tokens"] = 0
    with quiet():
        build = Build(cfg)
        build.backend.hf_model  # noqa: B018 - load first: the rate below is the build's own
        start = time.perf_counter()
        result = build.run(progress=False)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": seconds, "kept": result.kept, "records": args.memory_child}))


def memory_run(root: str, model: str, records: int, images: list[str], batch: int, threads: int) -> dict:
    folder = os.path.join(root, f"mem{records}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    prompts = write_prompts(os.path.join(folder, "prompts.jsonl"), images, records)
    cmd = [sys.executable, "-m", "benchmarks.bench", "--memory-child", str(records), "--memory-model", model, "--prompts-file", prompts,
           "--out", os.path.join(folder, "data"), "--memory-batch", str(batch), "--threads", str(threads)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LLAMAFACTORY_VERBOSITY": "WARN"})
    if proc.returncode:
        raise RuntimeError(f"memory build over {records} records failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- main --------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a LLaVA-style model dir (default: build a tiny offline LLaVA)")
    p.add_argument("--template", default="llava", help="LLaMA-Factory template of --model (default: llava)")
    p.add_argument("--out", default="bench_out", help="work folder (default: bench_out)")
    p.add_argument("--prompts", type=int, default=256, help="prompts; each is answered on the clean and the augmented view (default: 256)")
    p.add_argument("--new-tokens", type=int, default=64, help="exactly this many new tokens per answer, every method (default: 64)")
    p.add_argument(
        "--batch-sizes",
        default="32,64,128",
        help="builder batch sizes to sweep, records per batch; sizes above half the prompts are left out (default: 32,64,128)",
    )
    p.add_argument("--repeats", type=int, default=5, help="runs of each builder / bare measurement, interleaved; the fastest counts (default: 5)")
    p.add_argument("--image-size", type=int, help="side of the JPEG files (default: twice the model's input side, 64 px for the tiny model)")
    p.add_argument("--large-image-size", type=int, default=336, help="a second builder run on files this large, reported beside (0: skip; default: 336)")
    p.add_argument("--step", type=int, default=500, help="diffusion noise step (default: 500)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every method (default: 1; see docs/performance.md)")
    p.add_argument("--memory-records", default="2000,20000", help="source sizes of the two memory builds (default: 2000,20000)")
    p.add_argument("--memory-batch", type=int, default=256, help="batch size of the memory builds (default: 256)")
    p.add_argument("--aug-images", type=int, default=32, help="images per augmentation throughput round (default: 32)")
    p.add_argument("--skip-sequential", action="store_true", help="leave out the official-style loop (X is then nan)")
    p.add_argument("--skip-chatmodel", action="store_true", help="leave out the ChatModel loop (Y is then nan)")
    p.add_argument("--skip-memory", action="store_true", help="leave out the memory builds (W is then nan)")
    # internal: one memory build in a subprocess
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--memory-model", help=argparse.SUPPRESS)
    p.add_argument("--prompts-file", help=argparse.SUPPRESS)
    return p.parse_args(argv)


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


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.memory_child is not None:
        memory_child(args)
        return 0

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    root = os.path.abspath(args.out)
    os.makedirs(root, exist_ok=True)
    n, tokens = args.prompts, args.new_tokens
    sizes = sorted({int(s) for s in args.batch_sizes.split(",") if 0 < int(s) <= max(1, n // 2)}) or [max(1, n // 2)]
    started, load_start = time.perf_counter(), load_average()

    from seva_plugin.dev.tiny_models import build_tiny_llava

    tiny = os.path.join(root, "tiny_llava")
    if not os.path.isfile(os.path.join(tiny, "config.json")):
        log("building the tiny offline LLaVA")
        with quiet():
            build_tiny_llava(tiny, seed=0)
    model_dir = os.path.abspath(args.model) if args.model else tiny
    template = args.template

    # one loaded model shared by the builder, the official-style loop and bare generate
    from seva_plugin.build.pipeline import Build

    log(f"loading {model_dir}")
    placeholder = write_prompts(os.path.join(root, "placeholder.jsonl"), ["unused.jpg"], 1)
    with quiet():
        probe = Build(build_config(model_dir, template, placeholder, os.path.join(root, "probe"), "probe", sizes[0], tokens, args.step))
        loaded = probe.backend
        model, renderer = loaded.hf_model, loaded.renderer
    tokenizer, processor, tpl = renderer.tokenizer, renderer.processor, renderer.template
    backend, augmenter = probe.backend, probe.augmenter
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen_kwargs = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, eos_token_id=tpl.get_stop_token_ids(tokenizer), pad_token_id=pad)
    image_size = args.image_size or 2 * input_side(processor)

    log(f"writing {n} prompts, one {image_size} px JPEG file each")
    images = make_images(os.path.join(root, f"images{image_size}"), n, image_size)
    prompts = write_prompts(os.path.join(root, f"prompts{image_size}.jsonl"), images, n)
    rows = [json.loads(line) for line in open(prompts, encoding="utf-8")]

    from seva_plugin.build.images import load_rgb
    from seva_plugin.build.records import LoadedRecord
    from seva_plugin.build.views import record_seed
    from seva_plugin.plugins.sources.jsonl import JsonlSource

    records = [LoadedRecord(r, [load_rgb(p) for p in r.images], record_seed(0, r.id)) for r in JsonlSource(prompts).iter_records()]
    texts = []  # each prompt rendered by the template, one <image> marker, for processor(text=...)
    for r in records:
        raw, _ = tpl.encode_oneturn(tokenizer, [{"role": "user", "content": r.record.prompt}, {"role": "assistant", "content": ""}], None, None)
        texts.append(tokenizer.decode(raw, skip_special_tokens=False))
    same_ids = processor(images=records[0].images, text=texts[0], add_special_tokens=False)["input_ids"][0] == backend.renderer.prompt_ids(
        records[0].record.prompt, records[0].images
    )
    if not same_ids:
        log("warning: processor(text=rendered prompt) does not give the builder's token ids for this model")

    log("warm-up")
    with torch.inference_mode():
        model.generate(**prepared_batches(backend, augmenter, records[:4], 4)[0], **gen_kwargs)

    # 1 + 4: builder sweep and bare generate, interleaved, fastest of --repeats
    builder = {bs: Timing() for bs in sizes}
    bare = {bs: Timing() for bs in sizes}
    digests: dict[int, set] = {bs: set() for bs in sizes}
    batches = {bs: prepared_batches(backend, augmenter, records, bs) for bs in sizes}
    for rep in range(args.repeats):
        log(f"builder and bare generate at batch sizes {sizes}, round {rep + 1}/{args.repeats}")
        for bs in sizes:
            cfg = build_config(model_dir, template, prompts, os.path.join(root, f"build_bs{bs}"), "bench", bs, tokens, args.step)
            seconds, digest = run_builder(cfg, loaded)
            builder[bs].runs.append(seconds)
            digests[bs].add(digest)
            bare[bs].runs.append(run_bare(model, batches[bs], gen_kwargs))
    del batches
    best_bs = min(sizes, key=lambda bs: builder[bs].best)

    large = None
    if args.large_image_size and args.large_image_size != image_size:
        log(f"builder on {args.large_image_size} px files, batch size {best_bs}")
        big = make_images(os.path.join(root, f"images{args.large_image_size}"), n, args.large_image_size)
        big_prompts = write_prompts(os.path.join(root, f"prompts{args.large_image_size}.jsonl"), big, n)
        large = Timing()
        for _ in range(max(1, min(3, args.repeats))):
            cfg = build_config(model_dir, template, big_prompts, os.path.join(root, "build_large"), "bench", best_bs, tokens, args.step)
            large.runs.append(run_builder(cfg, loaded)[0])

    # 2: the official-style loop
    sequential = None
    if not args.skip_sequential:
        log(f"official-style loop: {n} prompts x 2 views, one generate each")
        sequential = run_sequential(model, processor, augmenter, rows, texts, tokens, gen_kwargs["pad_token_id"], gen_kwargs["eos_token_id"])

    # 3: ChatModel
    chat_seconds = None
    if not args.skip_chatmodel:
        log(f"LLaMA-Factory ChatModel: {n} prompts x 2 views, one chat call each")
        chat_seconds, chat_tokens = run_chatmodel(model_dir, template, rows, tokens)
        if chat_tokens != 2 * n * tokens:
            log(f"warning: ChatModel produced {chat_tokens} tokens, expected {2 * n * tokens}")

    # 6: augmentation throughput
    log("augmentation throughput at 336 px")
    aug = augment_throughput(336, images[: args.aug_images])

    # 5: memory, each build in its own process (the tiny model: a cheap configuration)
    mem = []
    if not args.skip_memory:
        mem_images = make_images(os.path.join(root, "images_mem"), 64, 64, seed=1, fmt="png")
        for count in (int(s) for s in args.memory_records.split(",")):
            log(f"memory: a build over {count} source records in a subprocess")
            mem.append(memory_run(root, tiny, count, mem_images, args.memory_batch, args.threads))

    # -- report --------------------------------------------------------------------------------
    b_best = builder[best_bs].best
    rate = lambda seconds: 2 * n / seconds  # noqa: E731 - answers per second
    lines = [
        "",
        f"seva-plugin bench: {os.path.basename(model_dir)} ({template}), {n} prompts x 2 views (clean, diffusion_noise t={args.step}),",
        f"exactly {tokens} new tokens per answer, {image_size} px JPEG files, torch threads {args.threads}",
        f"machine: {machine()}; load average {load_start:.1f} at start, {load_average():.1f} at end",
        f"torch {torch.__version__}, transformers {transformers.__version__}; fastest of {args.repeats} interleaved runs for 1 and 4",
        "",
        f"{'method':<48} {'seconds':>8} {'answers/s':>10} {'tokens/s':>9} {'builder is':>11}",
    ]

    def row(name: str, seconds: float | None) -> str:
        if seconds is None:
            return f"{name:<48} {'skipped':>8}"
        return f"{name:<48} {seconds:8.2f} {rate(seconds):10.1f} {rate(seconds) * tokens:9.0f} {seconds / b_best:10.2f}x"

    lines.append(row(f"1. builder (Build.run, hf), batch {best_bs}", b_best))
    lines.append(row("2. official-style loop (processor + generate)", sequential))
    lines.append(row("3. ChatModel (hf engine), one chat per answer", chat_seconds))
    lines.append(row(f"4. bare batched generate, batch {best_bs}", bare[best_bs].best))
    if large is not None:
        lines.append(row(f"   builder on {args.large_image_size} px files, batch {best_bs}", large.best))
    lines += [
        "",
        "builder batch-size sweep (records per batch, 2 sequences each); overhead = builder / bare:",
        f"{'batch':>7} {'builder s':>10} {'bare s':>8} {'overhead':>9} {'median of paired':>17} {'answers/s':>10}",
    ]
    for bs in sizes:
        paired = median([b / g for b, g in zip(builder[bs].runs, bare[bs].runs, strict=True)])
        mark = "  <- best" if bs == best_bs else ""
        lines.append(
            f"{bs:>7} {builder[bs].best:10.2f} {bare[bs].best:8.2f} {builder[bs].best / bare[bs].best:9.3f} {paired:17.3f} {rate(builder[bs].best):10.1f}{mark}"
        )
    deterministic = all(len(d) == 1 for d in digests.values())
    lines.append(
        f"builder runs (s), batch {best_bs}: "
        + " ".join(f"{s:.2f}" for s in builder[best_bs].runs)
        + "; bare: "
        + " ".join(f"{s:.2f}" for s in bare[best_bs].runs)
    )
    lines.append(f"data file byte-identical across the repeats of each batch size: {'yes' if deterministic else 'NO'}")
    if mem:
        lines += ["", f"memory: cheap builds (tiny model, 64 px PNG files, max_new_tokens=1, batch {args.memory_batch}), one subprocess each:"]
        for m in mem:
            lines.append(
                f"  {m['records']:>6} source records: peak RSS {m['peak_rss_mb']:7.1f} MiB, build {m['seconds']:5.1f} s ({m['records'] / m['seconds']:.0f} records/s)"
            )
    lines += ["", "augmentation throughput at 336 px, one image per call, 1 thread:"]
    lines.append(f"  diffusion_noise (3x336x336 tensor): {aug['diffusion_noise']:7.0f} images/s")
    lines.append(f"  moco (336x336 PIL image):           {aug['moco']:7.0f} images/s")
    lines += ["", f"bench time {time.perf_counter() - started:.0f} s"]
    x = sequential / b_best if sequential else float("nan")
    y = chat_seconds / b_best if chat_seconds else float("nan")
    z = b_best / bare[best_bs].best
    w = mem[-1]["peak_rss_mb"] / mem[0]["peak_rss_mb"] if mem else float("nan")
    print("\n".join(lines), flush=True)
    print(f"BENCH speedup_vs_sequential={x:.2f} speedup_vs_chatmodel={y:.2f} overhead={z:.3f} rss_ratio={w:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
