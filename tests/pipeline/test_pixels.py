"""The pixels the model answers about are the pixels LLaMA-Factory trains on (issue 26, item 5).

LLaMA-Factory 0.9.5 loads a JSONL set's image with ``Image.open(path)``, resizes it to
``image_max_pixels`` and converts it to RGB (``mm_plugin._regularize_images``, ``_preprocess_image``):
no EXIF rotation, 16-bit values clipped, transparency dropped. A Parquet set's images go through
``datasets`` (decoded with EXIF rotation, re-encoded by ``dataset.map``: a JPEG at quality 75).
A build normalises every image (upright, 16-bit rescaled, transparency on white), so where the host
would load a file otherwise, the writers write the normalised image for training.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from seva_plugin.pipeline.images import load_rgb
from seva_plugin.plugins.writers.llamafactory import LlamaFactoryWriter

LIMITS = {"image_max_pixels": 768 * 768, "image_min_pixels": 32 * 32}  # LLaMA-Factory's defaults


def unusual_images(folder) -> dict[str, str]:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    paths = {}

    def save(name, img, **kw):
        paths[name] = os.path.join(folder, name)
        img.save(paths[name], **kw)

    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees
    save("rotated.jpg", Image.fromarray((rng.rand(32, 64, 3) * 255).astype(np.uint8)), exif=exif.tobytes(), quality=95)
    save("16bit.png", Image.fromarray(np.linspace(0, 4000, 40 * 60, dtype=np.uint16).reshape(40, 60)))
    palette = Image.fromarray(rng.randint(0, 4, (40, 60)).astype(np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
    save("palette.png", palette, transparency=0)
    rgba = rng.randint(0, 256, (40, 60, 4)).astype(np.uint8)
    save("rgba.png", Image.fromarray(rgba, "RGBA"))
    save("big_palette.png", Image.fromarray(rng.randint(0, 4, (900, 1000)).astype(np.uint8), "P"))  # resized: NEAREST on P, BICUBIC on RGB
    save("plain.jpg", Image.fromarray((rng.rand(40, 60, 3) * 255).astype(np.uint8)), quality=90)
    save("plain.png", Image.fromarray((rng.rand(40, 60, 3) * 255).astype(np.uint8)))
    return paths


def host_plugin():
    from llamafactory.data.mm_plugin import get_mm_plugin

    return get_mm_plugin("llava", image_token="<image>")


def pixels(plugin, image) -> np.ndarray:
    """What LLaMA-Factory's plugin makes of ``image`` (a path, a decoded image or datasets' dict) before the processor."""
    [img] = plugin._regularize_images([image], **LIMITS)["images"]
    return np.asarray(img.convert("RGB"))


def pairs_for(paths: dict[str, str]) -> list[dict]:
    return [{"id": name, "prompt": "<image>Q?", "images": [path], "chosen": "a", "rejected": "b"} for name, path in paths.items()]


def test_a_jsonl_set_trains_on_the_pixels_the_build_saw(tmp_path):
    paths = unusual_images(tmp_path / "src")
    writer = LlamaFactoryWriter(str(tmp_path / "data"), "px")
    os.makedirs(tmp_path / "data")
    writer.prepare(False)
    data = writer.write(iter(pairs_for(paths)), False).manifest_files()["data"]
    plugin = host_plugin()
    rows = {json.loads(line)["id"]: json.loads(line) for line in open(data["path"])}
    for name, source in paths.items():
        [written] = rows[name]["images"]
        trained = pixels(plugin, os.path.join(tmp_path / "data", written))  # as LLaMA-Factory resolves it (media_dir = dataset_dir)
        seen = pixels(plugin, load_rgb(source))  # the build hands the plugin its loaded image
        assert trained.shape == seen.shape and (trained == seen).all(), name
        assert (written == source) == name.startswith("plain"), name  # only unusual images are copied (the others: absolute, outside dataset_dir)
    assert data["images"] == {"path": str(tmp_path / "data" / "px.images"), "files": 5, "normalised": 5}


def test_a_parquet_set_trains_on_the_pixels_the_build_saw(tmp_path):
    """Through `datasets` as LLaMA-Factory's align_dataset does (a dataset.map over the decoded rows)."""
    from datasets import load_dataset

    paths = unusual_images(tmp_path / "src")
    os.makedirs(tmp_path / "data")
    writer = LlamaFactoryWriter(str(tmp_path / "data"), "px", format="parquet")
    writer.prepare(False)
    data = writer.write(iter(pairs_for(paths)), False).manifest_files()["data"]
    ds = load_dataset(os.path.join(data["path"]), split="train")
    converted = ds.map(lambda row: {"_images": row["images"], "_id": row["id"]}, remove_columns=ds.column_names)
    plugin = host_plugin()
    for row in converted:
        trained, seen = pixels(plugin, row["_images"][0]), pixels(plugin, load_rgb(paths[row["_id"]]))
        assert trained.shape == seen.shape and (trained == seen).all(), row["_id"]
    assert data["normalised_images"] == 6  # all but the plain PNG, which trains as it is


@pytest.mark.slow
def test_llamafactorys_own_loader_reads_the_pixels_the_build_saw(tiny_llava, tmp_path):
    """The real `get_dataset` (LLaMA-Factory 0.9.5) on both formats, as `llamafactory-cli train` runs it."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    paths = unusual_images(tmp_path / "src")
    os.makedirs(tmp_path / "data")
    for fmt in ("jsonl", "parquet"):
        writer = LlamaFactoryWriter(str(tmp_path / "data"), f"px_{fmt}", format=fmt)
        writer.write(iter(pairs_for(paths)), False)
    for fmt in ("jsonl", "parquet"):
        args = {"model_name_or_path": tiny_llava, "template": "llava", "dataset_dir": str(tmp_path / "data"), "dataset": f"px_{fmt}", "stage": "dpo"}
        args.update(do_train=True, finetuning_type="lora", output_dir=str(tmp_path / "out"), cutoff_len=2048, report_to="none", overwrite_cache=True)
        model_args, data_args, training_args, *_ = get_train_args(args)
        tokenizer = load_tokenizer(model_args)
        template = get_template_and_fix_tokenizer(tokenizer["tokenizer"], data_args)
        dataset = get_dataset(template, model_args, data_args, training_args, stage="rm", **tokenizer)["train_dataset"]
        assert len(dataset) == len(paths)
        for row, source in zip(dataset, paths.values(), strict=True):
            trained, seen = pixels(template.mm_plugin, row["images"][0]), pixels(template.mm_plugin, load_rgb(source))
            assert trained.shape == seen.shape and (trained == seen).all(), (fmt, source)
