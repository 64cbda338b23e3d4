"""``python -m benchmarks.gpu`` (run by ``benchmarks/gpu.sh``): the ``hf`` backend on a GPU, LLaVA-1.5-7B shaped.

No hub and no weights are needed: the model is built from numbers (CLIP ViT-L/14 at 336 px as
the vision tower, Llama-2-7B as the language model, bf16) with random weights, directly on the
GPU. Its folder holds only the config, a small tokenizer and the image processor; the weights
are handed to the builder the way the CPU bench hands them (``share_weights``), so the build goes
through the real path: source, JPEG decoding, LLaMA-Factory's template and image processor in
the prefetch thread, diffusion noise on the pixel tensor, one ``generate`` per batch, the journal
and the writer.

Two kinds of answer lengths, at a few batch sizes:

- **fixed**: every answer exactly ``--fixed-tokens`` tokens (``min_new_tokens = max_new_tokens``);
- **natural (emulated)**: random weights have no natural end of sequence, so each row is made to
  stop after a length drawn from a SeVa-like distribution (``--tail`` of the answers run long):
  a logits processor bans the end-of-sequence token before that length and forces it there. The
  decoding work is what a model that stopped by itself at those lengths would cost; the lengths
  are an assumption, stated in the output.

Each figure is printed next to the physical limit of the GPU: decoding reads every weight of the
language model once per step (plus each sequence's KV cache), and a token costs about
2 x parameters FLOPs (14 GFLOP for 7B). ``--tiny`` runs the same code on a tiny shape on CPU in
seconds (a dry run; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
import zlib
from dataclasses import asdict, dataclass

SHAPES = {
    # LLaVA-1.5-7B: CLIP ViT-L/14-336 + Vicuna-7B (Llama-2-7B shape), 576 image tokens
    "llava-1.5-7b": {
        "vision": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 336,
            "patch_size": 14,
            "projection_dim": 768,
        },
        "text": {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "max_position_embeddings": 4096,
        },
        "vocab_size": 32064,
        "vision_feature_layer": -2,
    },
    "tiny": {
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
            "projection_dim": 32,
        },
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 4096,
        },
        "vocab_size": 32064,
        "vision_feature_layer": -1,
    },
}
# nameplate figures: dense bf16 tensor TFLOP/s and HBM TB/s (the first name found in the device name wins)
NAMEPLATES = (
    ("H200", 989.0, 4.8),
    ("H100 PCIe", 756.0, 2.0),
    ("H100", 989.0, 3.35),
    ("A100-SXM4-80GB", 312.0, 2.039),
    ("A100 80GB PCIe", 312.0, 1.935),
    ("A100", 312.0, 1.555),
    ("L40S", 362.0, 0.864),
    ("A10G", 70.0, 0.6),
    ("L4", 121.0, 0.3),
    ("RTX 4090", 165.0, 1.008),
)
SEVA_ANSWERS = 32_000  # SeVa-8k's official run: 16k prompts x 2 views


def log(msg: str) -> None:
    print(f"[gpu] {msg}", file=sys.stderr, flush=True)


# -- environment ---------------------------------------------------------------------------------
def shim_missing(force: bool = False) -> list[str]:
    """Make ``datasets``, ``torchaudio`` and ``trl`` importable where they are not installed.

    LLaMA-Factory imports them at module level on the inference path (an enum from ``datasets``
    for its eval arguments, ``torchaudio`` for audio inputs, ``trl``'s value-head class in its
    loader) without using them for image-text generation; their wheels (``datasets`` needs
    ``pyarrow`` and ``pandas``) do not fit in what a GPU call may carry. The stand-ins in
    ``benchmarks/gpu_shims/`` raise if anything calls them. ``force``: use them even where the
    real packages are installed (the CPU test of this path)."""
    import importlib.util
    from importlib.machinery import ModuleSpec, SourceFileLoader

    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_shims")
    names = [n for n in ("datasets", "torchaudio", "trl") if force or importlib.util.find_spec(n) is None]

    class Shims:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if fullname in names:
                origin = os.path.join(folder, f"{fullname}.py")
                return ModuleSpec(fullname, SourceFileLoader(fullname, origin), origin=origin)
            return None

    if names:
        sys.meta_path.insert(0, Shims())
    return names


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "llamafactory", "accelerate", "tokenizers", "pillow"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def check_llamafactory_pieces(folder: str) -> dict[str, str]:
    """Every LLaMA-Factory piece the ``hf`` backend uses, tried on the tiny twin: ``ok`` or the error."""
    results = {}

    def attempt(name, fn):
        try:
            fn()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            results[name] = f"{type(exc).__name__}: {str(exc)[:300]}"

    from seva_plugin.plugins.backends.hf import HfBackend

    backend = HfBackend(model=folder, template="llava", max_new_tokens=4, dtype="float32", device="cpu")
    attempt("get_infer_args + load_tokenizer + template (Renderer)", lambda: backend.renderer)
    attempt("load_model (LLaMA-Factory's loader, tiny twin)", lambda: backend.hf_model)
    return results


# -- the model ------------------------------------------------------------------------------------
def make_model_folder(folder: str, shape: dict):
    """Config, tokenizer and image processor of a LLaVA-1.5 shaped model (no weights). Returns the config."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor

    from seva_plugin.dev.tiny_models.llava import llama_style_tokenizer

    tokenizer = llama_style_tokenizer([])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>", "<image>")}
    v = shape["vision"]
    side, patch = v["image_size"], v["patch_size"]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**v),
        text_config=LlamaConfig(
            vocab_size=shape["vocab_size"],
            bos_token_id=ids["<s>"],
            eos_token_id=ids["</s>"],
            pad_token_id=ids["<pad>"],
            tie_word_embeddings=False,
            **shape["text"],
        ),
        image_token_index=ids["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=shape["vision_feature_layer"],
        image_seq_length=(side // patch) ** 2,
        projector_hidden_act="gelu",
    )
    config.bos_token_id, config.eos_token_id, config.pad_token_id = ids["<s>"], ids["</s>"], ids["<pad>"]
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    os.makedirs(folder, exist_ok=True)
    config.save_pretrained(folder)
    processor.save_pretrained(folder)
    return config


def random_model(config, device: str, dtype):
    """Random weights, made on ``device`` (7B in bf16 is made on the GPU in seconds, never on the CPU)."""
    import torch
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    )
    return model.eval()


def text_weight_bytes(model) -> tuple[int, int]:
    """(parameters, bytes) a decoding step reads: the language model and its head, not the input
    embedding (only the rows in use are gathered) nor the vision tower (prefill only)."""
    params = nbytes = 0
    for name, p in model.named_parameters():
        if "vision_tower" in name or "multi_modal_projector" in name or "embed_tokens" in name:
            continue
        params += p.numel()
        nbytes += p.numel() * p.element_size()
    return params, nbytes


# -- natural lengths (emulated) -----------------------------------------------------------------
def seva_like_length(rng: random.Random, cap: int, tail: float) -> int:
    """Answer tokens: half OCR-VQA (a word or phrase: 1-8 tokens), half TextCaps captions (about
    22 tokens, 8-48), and a share ``tail`` of answers that run long (64 tokens to the cap)."""
    u = rng.random()
    if u < tail:
        n = rng.randint(min(64, cap), cap)
    elif u < tail + (1 - tail) / 2:
        n = rng.randint(1, 8)
    else:
        n = int(min(48, max(8, rng.gauss(22, 7))))
    return max(1, min(cap, n))


def row_lengths(input_ids, attention_mask, cap: int, tail: float, seed: int = 0) -> list[int]:
    """Each row's emulated answer length, a function of its prompt ids only (both views of a record
    get the same length; reruns and other batch sizes get the same lengths)."""
    out = []
    for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
        key = zlib.crc32(bytes(str([i for i, m in zip(ids, mask, strict=True) if m]), "utf-8")) ^ seed
        out.append(seva_like_length(random.Random(key), cap, tail))
    return out


# -- the physical limit -------------------------------------------------------------------------
def limits(device_name: str, measured: dict) -> tuple[float, float, str]:
    """(TFLOP/s, TB/s, source): the nameplate when the GPU is known, else the measured figures."""
    for name, tflops, tbps in NAMEPLATES:
        if name.lower() in device_name.lower():
            return tflops, tbps, f"nameplate of {name}"
    return measured.get("tflops", float("nan")), measured.get("tbps", float("nan")), "measured here"


def microbench(device: str) -> dict:
    """Copy bandwidth and bf16 matmul throughput actually reached on this GPU (a few seconds)."""
    import torch

    if not device.startswith("cuda"):
        return {}
    x = torch.empty(2**30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        y.copy_(x)
    torch.cuda.synchronize()
    tbps = 2 * 20 * x.numel() / (time.perf_counter() - start) / 1e12  # read + write
    del x, y
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    tflops = 20 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12
    del a, b
    torch.cuda.empty_cache()
    return {"tbps": tbps, "tflops": tflops}


def bound_tokens_per_s(rows: int, context: float, weight_bytes: int, kv_per_token: int, flops_per_token: float, tflops: float, tbps: float) -> float:
    """Decoding tokens/s at ``rows`` sequences of mean ``context`` tokens: a step reads the weights once and
    each sequence's KV cache, and computes ``rows`` tokens; the slower of the two sets the step."""
    memory = (weight_bytes + rows * context * kv_per_token) / (tbps * 1e12)
    compute = rows * flops_per_token / (tflops * 1e12)
    return rows / max(memory, compute)


# -- measuring ----------------------------------------------------------------------------------
@dataclass
class Row:
    mode: str
    batch: int  # records per batch (2 sequences each)
    records: int
    seconds: float
    answers_per_s: float
    tokens_per_s: float  # answer tokens (end-of-sequence tokens not counted)
    mean_tokens: float
    wasted: float  # share of decode slots spent on rows that had already ended
    bound_tokens_per_s: float
    note: str = ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a tiny shape on CPU: a dry run of this script (figures mean nothing)")
    p.add_argument("--batch-sizes", help="records per batch, 2 sequences each (default: 8,32,64; --tiny: 2,4)")
    p.add_argument("--batches", type=int, default=2, help="batches per measurement (default: 2)")
    p.add_argument("--fixed-tokens", type=int, help="fixed mode: exactly this many new tokens (default: 128; --tiny: 6)")
    p.add_argument("--max-new-tokens", type=int, help="natural mode: the cap, SeVa's max_new_tokens (default: 512; --tiny: 24)")
    p.add_argument("--tail", type=float, default=0.02, help="natural mode: share of answers that run long, 64 tokens to the cap (default: 0.02)")
    p.add_argument("--budget-s", type=float, default=330, help="stop starting measurements after this many seconds of measuring (default: 330)")
    p.add_argument("--strategies", default="csr,stic,rlaifv", help="strategies built after the SeVa rows, if registered (default: csr,stic,rlaifv; '': none)")
    p.add_argument("--strategy-records", type=int, help="records of each strategy build (default: 8; --tiny: 2)")
    p.add_argument("--out", default="bench_out/gpu", help="work folder; figures go to gpu.json there (default: bench_out/gpu)")
    p.add_argument("--shim-all", action="store_true", help=argparse.SUPPRESS)  # tests: use the stand-ins even where the real packages exist
    args = p.parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")  # llamafactory 0.9.5 pins transformers<=5.6; the GPU machine has newer
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    shimmed = shim_missing(force=args.shim_all)

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    from benchmarks.common import build_config as bench_config
    from benchmarks.common import make_images, write_prompts
    from benchmarks.decode_stats import Recorder
    from seva_plugin.dev.tiny_models import build_tiny_llava
    from seva_plugin.plugins.backends.hf import HfBackend

    tiny = args.tiny
    device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    shape = SHAPES["tiny" if tiny else "llava-1.5-7b"]
    sizes = [int(s) for s in (args.batch_sizes or ("2,4" if tiny else "8,32,64")).split(",")]
    fixed_tokens = args.fixed_tokens or (6 if tiny else 128)
    cap = args.max_new_tokens or (24 if tiny else 512)
    root = os.path.abspath(args.out)
    os.makedirs(root, exist_ok=True)
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "CPU"
    info = {"versions": versions(), "device": device_name, "shimmed": shimmed, "shape": "tiny" if tiny else "llava-1.5-7b"}
    log(f"{device_name}; {info['versions']}; stand-ins for {shimmed or 'nothing'}")

    # 1. the LLaMA-Factory pieces the hf backend uses, on the tiny twin (on CPU: cheap, and it exercises load_model)
    twin = (
        build_tiny_llava(os.path.join(root, "tiny_twin"), seed=0)
        if not os.path.isfile(os.path.join(root, "tiny_twin", "config.json"))
        else os.path.join(root, "tiny_twin")
    )
    info["llamafactory_pieces"] = check_llamafactory_pieces(twin)
    for name, result in info["llamafactory_pieces"].items():
        log(f"{name}: {result}")

    # 2. the model, random weights on the device
    folder = os.path.join(root, "model_" + info["shape"])
    config = make_model_folder(folder, shape)
    t0 = time.perf_counter()
    model = random_model(config, device, dtype)
    if device == "cuda":
        torch.cuda.synchronize()
    params, weight_bytes = text_weight_bytes(model)
    text = config.text_config
    kv_per_token = 2 * text.num_hidden_layers * text.num_key_value_heads * (text.hidden_size // text.num_attention_heads) * torch.finfo(dtype).bits // 8
    flops_per_token = 2 * params  # matmuls; attention over the context adds ~4 x layers x hidden x context
    log(
        f"model built in {time.perf_counter() - t0:.1f} s: {params / 1e9:.2f}B decoding parameters, {weight_bytes / 1e9:.1f} GB read per step, KV "
        f"{kv_per_token / 2**20:.2f} MiB per token"
    )
    loaded = HfBackend(model=folder, template="llava", dtype="bfloat16" if dtype == torch.bfloat16 else "float32", device=device)
    loaded.__dict__["_model"] = model  # the weights are handed over, as share_weights does in the CPU bench
    renderer = loaded.renderer
    eos = renderer.tokenizer.eos_token_id

    measured = microbench(device)
    tflops, tbps, source = limits(device_name, measured) if device == "cuda" else (float("nan"), float("nan"), "no GPU")
    info.update(
        measured=measured, limit={"tflops": tflops, "tbps": tbps, "source": source}, params=params, weight_bytes=weight_bytes, kv_bytes_per_token=kv_per_token
    )

    # 3. inputs: JPEG files twice the input side (COCO-like for LLaVA-1.5), SeVa's prompt mix
    side = shape["vision"]["image_size"]
    count = max(sizes) * args.batches
    images = make_images(os.path.join(root, f"images{2 * side}"), count, 2 * side)
    prompts = write_prompts(os.path.join(root, "prompts.jsonl"), images, count)
    prompt_tokens = len(
        renderer.prompt_ids("<image>Provide a one-sentence caption for the provided image.\nReference OCR token: a, b, c, 1", [make_pil(2 * side)])
    )

    # warm-up: CUDA context, cuBLAS handles, kernels
    warm = bench_config(folder, "llava", prompts, os.path.join(root, "warm"), "warm", 2, 4, 500, fixed=True, dtype=loaded.dtype, device=device)
    warm["limit"] = 2
    warm["filters"] = []
    run_build(warm, loaded)

    rows: list[Row] = []
    kv_free = free_memory(device)
    plan = [(mode, bs) for bs in sizes for mode in ("fixed", "natural")]
    for mode, bs in plan:
        elapsed = time.perf_counter() - started
        natural = mode == "natural"
        tokens = cap if natural else fixed_tokens
        context = prompt_tokens + tokens
        if device == "cuda" and 2 * bs * context * kv_per_token * 1.3 > kv_free:  # each layer's cache is copied as it grows; activations
            rows.append(Row(mode, bs, 0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), "skipped: KV cache would not fit"))
            continue
        if elapsed > args.budget_s:
            rows.append(Row(mode, bs, 0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), "skipped: time budget"))
            continue
        cfg = bench_config(
            folder, "llava", prompts, os.path.join(root, f"{mode}{bs}"), "gpu", bs, tokens, 500, fixed=not natural, dtype=loaded.dtype, device=device
        )
        cfg["limit"] = bs * args.batches
        cfg["filters"] = []  # every pair written (random answers are often identical or empty)
        stops = (lambda ids, mask: row_lengths(ids, mask, cap, args.tail)) if natural else None
        with Recorder(model, eos, stops) as rec:
            seconds = run_build(cfg, loaded)
        st = rec.stats()
        answers = st["rows"]
        mean = st["answer_tokens"] / answers if answers else float("nan")
        mean_context = prompt_tokens + (mean if natural else tokens) / 2
        bound = bound_tokens_per_s(2 * bs, mean_context, weight_bytes, kv_per_token, flops_per_token, tflops, tbps)
        rows.append(Row(mode, bs, bs * args.batches, seconds, answers / seconds, st["answer_tokens"] / seconds, mean, st["wasted"], bound))
        log(f"{mode} batch {bs}: {seconds:.1f} s, {answers / seconds:.1f} answers/s, {st['answer_tokens'] / seconds:.0f} tokens/s, wasted {st['wasted']:.0%}")

    # 4. the strategies (CSR, and those issues 26-27 add when registered) on the same model
    from benchmarks.gpu_strategies import report_lines, run_strategies

    names = [s for s in args.strategies.split(",") if s]
    records = min(args.strategy_records or (2 if tiny else 8), count)
    log(f"strategies {names}: {records} records each")
    strategies = run_strategies(names, folder, loaded, prompts, root, records, tiny)
    limit = lambda rows, context: bound_tokens_per_s(rows, context, weight_bytes, kv_per_token, flops_per_token, tflops, tbps)  # noqa: E731

    more = report_lines(strategies, limit)
    report(info, rows, args, cap, fixed_tokens, prompt_tokens, weight_bytes, kv_per_token, flops_per_token, tflops, tbps, started, more)
    with open(os.path.join(root, "gpu.json"), "w") as fh:
        json.dump({**info, "rows": [asdict(r) for r in rows], "strategies": [asdict(r) for r in strategies], "args": vars(args)}, fh, indent=1, default=str)
    return 0


def make_pil(side: int):
    from PIL import Image

    return Image.new("RGB", (side, side), (128, 128, 128))


def free_memory(device: str) -> float:
    import torch

    if device != "cuda":
        return float("inf")
    free, _ = torch.cuda.mem_get_info()
    return free


def run_build(cfg: dict, loaded) -> float:
    """``Build(cfg).run()`` with the loaded weights, timed from construction to the manifest."""
    import shutil

    import torch

    from seva_plugin.pipeline.build import Build

    shutil.rmtree(cfg["output"]["dataset_dir"], ignore_errors=True)
    start = time.perf_counter()
    build = Build(cfg)
    build.backend.share_weights(loaded)
    build.run(progress=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def report(info, rows, args, cap, fixed_tokens, prompt_tokens, weight_bytes, kv_per_token, flops_per_token, tflops, tbps, started, more=()) -> None:
    v = info["versions"]
    lines = [
        "",
        f"seva-plugin GPU bench: hf backend, {info['shape']} with random weights, {info['device']}",
        f"python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, llamafactory {v['llamafactory']}; "
        f"stand-ins for: {', '.join(info['shimmed']) or 'none'}",
        "LLaMA-Factory pieces: " + "; ".join(f"{k}: {r}" for k, r in info["llamafactory_pieces"].items()),
        f"prompt {prompt_tokens} tokens (image tokens included); fixed: exactly {fixed_tokens} new tokens; "
        f"natural (emulated): forced stops at SeVa-like lengths, cap {cap}, {args.tail:.0%} of answers run long",
        f"limit: {tflops:.0f} TFLOP/s, {tbps:.2f} TB/s ({info['limit']['source']}); measured here: "
        + (", ".join(f"{k} {val:.2f}" for k, val in info["measured"].items()) or "nothing (no GPU)"),
        f"decoding reads {weight_bytes / 1e9:.1f} GB of weights per step, {kv_per_token / 2**20:.2f} MiB of KV per token of context; "
        f"{flops_per_token / 1e9:.1f} GFLOP per token",
        "",
        f"{'mode':<8} {'batch':>5} {'seqs':>5} {'seconds':>8} {'answers/s':>10} {'tokens/s':>9} {'mean tok':>9} {'wasted':>7} {'limit tok/s':>12} "
        f"{'of limit':>9}",
    ]
    for r in rows:
        if r.note:
            lines.append(f"{r.mode:<8} {r.batch:>5} {2 * r.batch:>5}  {r.note}")
            continue
        share = r.tokens_per_s / r.bound_tokens_per_s if r.bound_tokens_per_s == r.bound_tokens_per_s else float("nan")
        lines.append(
            f"{r.mode:<8} {r.batch:>5} {2 * r.batch:>5} {r.seconds:8.2f} {r.answers_per_s:10.2f} {r.tokens_per_s:9.0f} {r.mean_tokens:9.1f} "
            f"{r.wasted:7.0%} {r.bound_tokens_per_s:12.0f} {share:9.1%}"
        )
    natural = [r for r in rows if r.mode == "natural" and not r.note]
    if natural:
        best = max(natural, key=lambda r: r.answers_per_s)
        hours = SEVA_ANSWERS / best.answers_per_s / 3600
        lines += [
            "",
            f"SeVa-8k ({SEVA_ANSWERS} answers) at the best natural rate ({best.answers_per_s:.1f} answers/s, batch {best.batch}): "
            f"{hours:.2f} h on 1 GPU, {hours / 8:.2f} h on 8 (ray.num_workers=8, one replica per GPU, assuming linear scaling)",
        ]
    lines += list(more)
    lines.append(f"total {time.perf_counter() - started:.0f} s")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
