"""Writer ``llamafactory``: sharegpt preference data plus its ``dataset_info.json`` entry.

``format: jsonl`` (the default) writes ``NAME.jsonl`` with image paths, relative to ``dataset_dir``
when the image lies inside it and absolute otherwise, so they resolve when LLaMA-Factory trains with
``dataset_dir`` set to this folder (media_dir defaults to dataset_dir), from any working directory.

``format: parquet`` writes ``NAME/`` as a Hub-ready folder (``parquet_folder.py``): the images
embedded with the features of the Hub's preference sets, so LLaMA-Factory can mix it with ``rlhf_v``
and the like (a path-based JSONL cannot: "The features can't be aligned because the key _images
..."), sharded, with a dataset card. The entry names the ``NAME/data`` folder.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, RecordError, show
from seva_plugin.interfaces import Writer
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.files import atomic_write_json, atomic_write_lines, file_target, locked, write_errors
from seva_plugin.plugins.writers.card import card
from seva_plugin.plugins.writers.embedding import file_stem, path_stem, training_file
from seva_plugin.plugins.writers.parquet_folder import DATA, ParquetFolder, embedded_rows
from seva_plugin.plugins.writers.rows import sharegpt_features, sharegpt_row

FORMATS = ("jsonl", "parquet")
USAGE = """Train with LLaMA-Factory: copy this folder into your `dataset_dir` and register it in `dataset_info.json`:

```json
"{name}": {{"file_name": "{name}/data", "formatting": "sharegpt", "ranking": true,
  "columns": {{"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"}}}}
```

Its features are those of the Hub's preference sets (`llamafactory/RLHF-V`), so `dataset: {name},rlhf_v` mixes the two.
From Python: `datasets.load_dataset("path/to/{name}", split="train")`."""


def dataset_entry(file_name: str) -> dict:
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    }


@dataclass
class LlamaFactoryWriter(Writer):
    name = "llamafactory"
    dataset_dir: str  # supplied from output.dataset_dir
    dataset_name: str  # supplied from output.name
    image_paths: str = "auto"  # jsonl: auto | relative | absolute
    format: str = "jsonl"  # jsonl (image paths) | parquet (images embedded, sharded, with a dataset card)
    shard_size: int = 1000  # parquet: pairs per shard file
    license: str = "unknown"  # parquet: the card's licence, a Hub licence id

    def __post_init__(self):
        if self.image_paths not in ("auto", "relative", "absolute"):
            raise ConfigError(f"output.image_paths must be auto, relative or absolute, got {show(self.image_paths)}.")
        if self.format not in FORMATS:
            raise ConfigError(f"output.format must be jsonl or parquet, got {show(self.format)}.")
        self.folder = (
            ParquetFolder(os.path.join(self.dataset_dir, self.dataset_name), sharegpt_features(), self.shard_size) if self.format == "parquet" else None
        )
        self.entry = dataset_entry(f"{self.dataset_name}/{DATA}" if self.folder else f"{self.dataset_name}.jsonl")
        self.info_path = os.path.join(self.dataset_dir, "dataset_info.json")
        self.files = DatasetFiles(self.dataset_dir, self.dataset_name)

    def _read_info(self) -> dict:
        file_target(self.info_path)  # a directory there is a clear error
        if not os.path.exists(self.info_path):
            return {}
        try:
            with open(self.info_path, encoding="utf-8") as fh:
                info = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.info_path} is not valid JSON ({exc}); fix it by hand, nothing was changed.") from None
        if not isinstance(info, dict):
            raise ConfigError(f"{self.info_path} must hold a JSON object.")
        return info

    def prepare(self, overwrite: bool) -> None:
        """Refuse early (before any model loads) to replace a different entry of the same name."""
        existing = self._read_info().get(self.dataset_name)
        if existing is not None and existing != self.entry and not overwrite:
            raise ConfigError(
                f"{self.info_path} already has a different entry '{self.dataset_name}': {json.dumps(existing)}. "
                "Choose another output.name or set output.overwrite=true."
            )
        if self.folder:
            self.folder.check_target(overwrite)
        else:
            self.files.check_replace([self.files.data, self.files.images], overwrite)  # only what seva-plugin wrote

    def _image_path(self, image: str | dict, record_id: str, index: int) -> str:
        """The file training reads, with the pixels the build saw: the image itself, or a file written into
        ``NAME.images/`` (an embedded image exported, or the normalised image where LLaMA-Factory would
        load the stored one otherwise: ``embedding.training_file``)."""
        stem = file_stem(record_id, index) if isinstance(image, dict) else path_stem(image)
        if stem in self.written:
            path = self.written[stem]
        else:
            try:
                path, wrote = training_file(image, self.files.images, stem)
            except RecordError:  # unreadable now: the path as it is (a Parquet writer leaves such a pair out)
                path, wrote = image, False
            if wrote:
                self.written[stem] = path
                self.normalised += not isinstance(image, dict)
        root = os.path.abspath(self.dataset_dir)
        inside = os.path.commonpath([root, path]) == root
        if self.image_paths == "relative" or (self.image_paths == "auto" and inside):
            return os.path.relpath(path, root)
        return path

    def record(self, pair: dict) -> dict:
        out = {
            "id": pair["id"],
            "conversations": [{"from": "human", "value": pair["prompt"]}],
            "chosen": {"from": "gpt", "value": pair["chosen"]},
            "rejected": {"from": "gpt", "value": pair["rejected"]},
            "images": [self._image_path(p, pair["id"], k) for k, p in enumerate(pair["images"])],
        }
        for key in ("provenance", "meta", "scores"):
            if pair.get(key):
                out[key] = pair[key]
        return out

    def write(self, pairs, overwrite: bool) -> dict:
        """Under the registry's lock: check the entry again (someone may have registered the name
        since the build began), and only then replace the data and merge the entry, so a refusal
        leaves everything as it was."""
        with locked(self.info_path):
            self.prepare(overwrite)
            data = self._write_parquet(pairs) if self.folder else self._write_jsonl(pairs)
            with write_errors(self.info_path):
                info = self._read_info()
                info[self.dataset_name] = self.entry
                atomic_write_json(self.info_path, info)
        return {"data": data, "dataset_info": self.info_path}

    def finish(self, manifest: dict) -> None:
        """Parquet: the dataset card, once the manifest holds the counts and provenance."""
        if self.folder:
            data = manifest["files"]["data"]
            usage = USAGE.format(name=self.dataset_name)
            self.folder.write_card(card(self.dataset_name, manifest, sharegpt_features(), data, licence=self.license, tags=["llama-factory"], usage=usage))

    def _write_parquet(self, pairs) -> dict:
        skipped: list[dict] = []
        counts: Counter = Counter()
        data = self.folder.write(embedded_rows(pairs, sharegpt_row, skipped, counts))
        return {**data, "format": "parquet", "skipped": skipped, "normalised_images": counts["normalised"]}

    def _write_jsonl(self, pairs) -> dict:
        data_path = os.path.join(self.dataset_dir, self.entry["file_name"])
        count = 0

        def lines():
            nonlocal count
            for pair in pairs:
                count += 1
                yield json.dumps(self.record(pair), ensure_ascii=False) + "\n"

        self.written, self.normalised = {}, 0
        sha = atomic_write_lines(data_path, lines())
        self._remove_unused_images()
        data = {"path": data_path, "format": "jsonl", "sha256": sha, "records": count}
        if self.written:
            data["images"] = {"path": self.files.images, "files": len(self.written), "normalised": self.normalised}
        return data

    def _remove_unused_images(self) -> None:
        """Files of an earlier write in ``NAME.images/`` that this one no longer uses (the folder is this dataset's own)."""
        if not os.path.isdir(self.files.images):
            return
        used = set(self.written.values())
        for name in os.listdir(self.files.images):
            path = os.path.join(self.files.images, name)
            if path not in used and os.path.isfile(path):
                with write_errors(path):
                    os.unlink(path)


@hookimpl
def register_writers(register):
    register(LlamaFactoryWriter)
