"""The tiny offline twins load, generate and train through the real LLaMA-Factory.

Everything is built from configs in temporary directories; nothing touches a
model hub. Runtime on 2 free CPU cores: well under a minute, most of it the
start-up of the three ``llamafactory-cli train`` subprocesses (run in parallel).

Torch runs single-threaded here: for models this small, a second OpenMP thread
buys nothing, and on a busy machine spinning threads made batched generation
~50x slower (1 s -> 50 s for 2 x 512 tokens).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llamafactory")

from helpers import REPO as _REPO  # noqa: E402
from seva_plugin.dev import tiny_models  # noqa: E402

REPO = Path(_REPO)
RECIPE = REPO / "recipes" / "tiny_dpo_cpu.yaml"

# family -> (builder, LLaMA-Factory template, extra recipe overrides)
FAMILIES = {
    "llava": (tiny_models.build_tiny_llava, "llava", {}),
    "llava_next": (tiny_models.build_tiny_llava_next, "llava_next", {}),
    # 56x56 pixels -> 4x4 patches of 14 px -> 2x2 merged = 4 image tokens
    "qwen2_vl": (tiny_models.build_tiny_qwen2_vl, "qwen2_vl", {"image_max_pixels": 3136}),
}
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 160, 30), "yellow": (230, 210, 20)}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, str]:
    """One saved model per family (built once per session)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {name: builder(root / name, seed=0) for name, (builder, _, _) in FAMILIES.items()}


@pytest.fixture(scope="session")
def images():
    """Two small images of different sizes (exercises resizing / AnyRes tiling)."""
    from PIL import Image, ImageDraw

    out = []
    for size, colour in [((40, 40), COLOURS["red"]), ((64, 40), COLOURS["blue"])]:
        img = Image.new("RGB", size, (255, 255, 255))
        ImageDraw.Draw(img).ellipse([4, 4, size[0] - 4, size[1] - 4], fill=colour)
        out.append(img)
    return out


@pytest.fixture(scope="session")
def pref_dataset(tmp_path_factory) -> Path:
    """A 4-pair multimodal preference set registered in dataset_info.json."""
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("pref_data")
    (root / "imgs").mkdir()
    names = list(COLOURS)
    with open(root / "pairs.jsonl", "w") as f:
        for i, name in enumerate(names):
            img = Image.new("RGB", (48, 48), (255, 255, 255))
            ImageDraw.Draw(img).rectangle([10, 10, 38, 38], fill=COLOURS[name])
            img.save(root / "imgs" / f"{i}.png")
            record = {
                "conversations": [{"from": "human", "value": "<image>What color is the shape?"}],
                "chosen": {"from": "gpt", "value": f"The shape is {name}."},
                "rejected": {"from": "gpt", "value": f"The shape is {names[(i + 1) % len(names)]}."},
                "images": [f"imgs/{i}.png"],
            }
            f.write(json.dumps(record) + "\n")
    info = {
        "tiny_pairs": {
            "file_name": "pairs.jsonl",
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
        }
    }
    (root / "dataset_info.json").write_text(json.dumps(info))
    return root


def _load_with_llamafactory(model_dir: str, template_name: str):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import get_infer_args
    from llamafactory.model import load_model, load_tokenizer

    model_args, data_args, finetuning_args, _ = get_infer_args({"model_name_or_path": model_dir, "template": template_name, "image_max_pixels": 3136})
    modules = load_tokenizer(model_args)
    tokenizer, processor = modules["tokenizer"], modules["processor"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False)
    # LLaMA-Factory loads the checkpoint's own dtype (the twins ship the real one: LLaVA-1.5 float16, Qwen2-VL
    # bfloat16); the checks below compare logits in float32, as the hf backend computes by default
    return model.to(torch.float32), tokenizer, processor, template


def _prompt_ids(template, tokenizer, processor, text: str, image) -> list[int]:
    """Prompt ids exactly as LLaMA-Factory's HF chat engine builds them."""
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
    messages = template.mm_plugin.process_messages(messages, [image], [], [], processor)
    ids, _ = template.encode_oneturn(tokenizer, messages)
    ids, _ = template.mm_plugin.process_token_ids(ids, None, [image], [], [], tokenizer, processor)
    return ids


def _left_padded_batch(model, template, tokenizer, processor, prompts, images):
    ids = [_prompt_ids(template, tokenizer, processor, p, im) for p, im in zip(prompts, images, strict=True)]
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    attention_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    n = len(images)
    mm = template.mm_plugin.get_mm_inputs(
        images=list(images),
        videos=[],
        audios=[],
        imglens=[1] * n,
        vidlens=[0] * n,
        audlens=[0] * n,
        batch_ids=ids,
        processor=processor,
    )
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, **mm}
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        # Qwen2-VL under transformers 5.6 builds M-RoPE positions only from these
        # (1 = image token); without them generate() silently falls back to 1-D
        # text positions. LLaMA-Factory's training collator builds them this way.
        types = torch.zeros_like(input_ids)
        types[input_ids == model.config.image_token_id] = 1
        batch["mm_token_type_ids"] = types
    return ids, batch


# --------------------------------------------------------------------------- #
# builders on their own
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("family", list(FAMILIES))
def test_builder_is_deterministic_and_tiny(family, tmp_path):
    from safetensors.torch import load_file

    builder = FAMILIES[family][0]
    a, b, c = builder(tmp_path / "a", seed=3), builder(tmp_path / "b", seed=3), builder(tmp_path / "c", seed=4)
    assert isinstance(a, str) and Path(a, "model.safetensors").is_file()
    wa, wb, wc = (load_file(Path(d, "model.safetensors")) for d in (a, b, c))
    assert wa.keys() == wb.keys() == wc.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed, same weights
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)  # other seed, other weights
    assert Path(a, "tokenizer.json").read_text() == Path(c, "tokenizer.json").read_text()
    n_params = sum(t.numel() for t in wa.values())
    assert 50_000 < n_params < 500_000


def test_vocab_words_become_single_tokens(tmp_path):
    from transformers import AutoTokenizer

    words = ["turquoise", "hexagon", "crescent", "octagon"]
    tok = AutoTokenizer.from_pretrained(tiny_models.build_tiny_llava(tmp_path / "m", vocab=words))
    for word in words:
        assert len(tok.encode(word, add_special_tokens=False)) == 1
        assert len(tok.encode(" " + word, add_special_tokens=False)) == 1
    assert tok.convert_ids_to_tokens(tok.encode("<image>", add_special_tokens=False)) == ["<image>"]
    assert tok.decode(tok.encode(" a turquoise hexagon.", add_special_tokens=False)) == " a turquoise hexagon."


def test_llava_image_size_sets_image_token_count(tmp_path):
    from PIL import Image
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_models.build_tiny_llava(tmp_path / "m", image_size=48, patch_size=8))
    out = proc(text="USER: <image>hi ASSISTANT:", images=Image.new("RGB", (70, 50)), return_tensors="pt")
    assert out["pixel_values"].shape[-2:] == (48, 48)
    assert int((out["input_ids"] == proc.image_token_id).sum()) == (48 // 8) ** 2


def test_clip_loads_and_scores(tmp_path, images):
    from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer

    path = tiny_models.build_tiny_clip(tmp_path / "clip", vocab=["hexagon"])
    model, processor = CLIPModel.from_pretrained(path), CLIPProcessor.from_pretrained(path)
    assert isinstance(processor.tokenizer, CLIPTokenizer)
    assert processor.tokenizer.tokenize("A Red HEXAGON") == ["a</w>", "red</w>", "hexagon</w>"]
    assert sum(p.numel() for p in model.parameters()) < 300_000
    inputs = processor(text=["a red circle", "a blue circle on the left"], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    # deterministic tokenizer: a rebuild gives the same files
    again = tiny_models.build_tiny_clip(tmp_path / "clip2", vocab=["hexagon"])
    assert Path(path, "tokenizer.json").read_text() == Path(again, "tokenizer.json").read_text()


# --------------------------------------------------------------------------- #
# through LLaMA-Factory's loaders
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.slow
def test_loads_through_llamafactory_and_generates_batched(family, tiny_dirs, images):
    model, tokenizer, processor, template = _load_with_llamafactory(tiny_dirs[family], FAMILIES[family][1])
    assert processor is not None and model.dtype == torch.float32
    # generation config agrees with the (template-fixed) tokenizer
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert tokenizer.eos_token_id in eos and set(template.get_stop_token_ids(tokenizer)) <= set(eos)
    assert tokenizer.pad_token_id is not None  # batched (left-padded) generation needs one
    assert gen.pad_token_id is not None  # the real checkpoint's (LLaVA-NeXT-Vicuna's is <unk>, not the tokenizer's <pad>)

    prompts = ["<image>What color is the shape?", "<image>Describe the image in one long sentence, please."]
    ids, batch = _left_padded_batch(model, template, tokenizer, processor, prompts, images)
    assert len(ids[0]) != len(ids[1])  # so left padding really happens
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=512, do_sample=False)
    width = batch["input_ids"].shape[1]
    assert out.shape[0] == 2 and width < out.shape[1] <= width + 512
    assert torch.equal(out[:, :width], batch["input_ids"])  # prompt is echoed unchanged

    # left padding is transparent: next-token logits match the unpadded single prompt
    with torch.no_grad():
        batched = model(**batch).logits[:, -1]
        for i in range(2):
            _, single = _left_padded_batch(model, template, tokenizer, processor, prompts[i : i + 1], images[i : i + 1])
            torch.testing.assert_close(model(**single).logits[0, -1], batched[i], atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- #
# the real CLI on the recipe
# --------------------------------------------------------------------------- #
def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("llamafactory-cli")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "llamafactory.cli"]


@pytest.fixture(scope="session")
def cli_runs(tiny_dirs, pref_dataset, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Run ``llamafactory-cli train`` on the recipe once per family, all in parallel.

    Each run is single-threaded, so the three share 2 cores well; most of each
    run is importing LLaMA-Factory, not training.
    """
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_DISABLED": "true",
    }
    running = {}
    for family, (_, template_name, extra) in FAMILIES.items():
        work = tmp_path_factory.mktemp(f"cli_{family}")
        overrides = {
            "model_name_or_path": tiny_dirs[family],
            "template": template_name,
            "dataset_dir": str(pref_dataset),
            "dataset": "tiny_pairs",
            "output_dir": str(work / "out"),
            **extra,
        }
        cmd = [*_cli(), "train", str(RECIPE), *(f"{k}={v}" for k, v in overrides.items())]
        log = open(work / "log.txt", "w+")
        running[family] = (subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT), log, work)

    results = {}
    for family, (popen, log, work) in running.items():
        try:
            popen.wait(timeout=600)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        log.seek(0)
        results[family] = (popen.returncode, log.read(), work / "out")
        log.close()
    return results


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_llamafactory_cli_dpo_lora_on_recipe(family, cli_runs):
    from safetensors import safe_open

    returncode, log, out_dir = cli_runs[family]
    assert returncode == 0, log[-5000:]

    adapter = out_dir / "adapter_model.safetensors"
    assert adapter.is_file() and adapter.stat().st_size > 0
    with safe_open(str(adapter), "pt") as f:
        keys = list(f.keys())
    # LoRA A and B on the 7 linear layers of each of the 2 LLM layers; none on the vision side
    assert len(keys) == 2 * 7 * 2
    assert all("language_model" in k and "lora_" in k for k in keys)
    results = json.loads((out_dir / "train_results.json").read_text())
    assert results["epoch"] == pytest.approx(1.0)
    assert 0.0 < results["train_loss"] < 2.0  # DPO sigmoid loss starts near ln 2
