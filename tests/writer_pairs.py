"""Helpers for writer and export tests: pairs as a build's journal holds them, without a model."""

from __future__ import annotations

import os

import yaml

from helpers import make_images


def make_pairs(folder, n: int) -> list[dict]:
    """``n`` SeVa-like pairs, each with one image file in ``folder``."""
    names = make_images(folder, n)
    return [
        {
            "id": f"p{i}",
            "prompt": "<image>What colour is the square?",
            "images": [os.path.join(folder, name)],
            "chosen": f"red {i}",
            "rejected": f"blue {i}",
            "provenance": {"strategy": "seva", "augment": "diffusion_noise", "seed": i},
        }
        for i, name in enumerate(names)
    ]


def manifest_for(files: dict, kept: int, dataset_dir: str | None = None, name: str | None = None) -> dict:
    """The parts of a build manifest a writer's ``finish`` reads; saved as dataset ``name``'s manifest
    when ``dataset_dir`` is given, as a build saves it (it lists the files the writer may replace later)."""
    manifest = {
        "seva_plugin": "test",
        "fingerprint": "test",
        "config": {"model": "tiny/llava", "template": "llava", "strategy": "seva"},
        "counts": {"kept": kept, "records": kept},
        "files": files,
    }
    if dataset_dir is not None:
        from seva_plugin.pipeline.dataset_files import DatasetFiles
        from seva_plugin.pipeline.files import atomic_write_json

        atomic_write_json(DatasetFiles(dataset_dir, name).manifest, manifest)
    return manifest


def front_matter(path) -> dict:
    """The YAML front matter of a dataset card."""
    text = open(path, encoding="utf-8").read()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])
