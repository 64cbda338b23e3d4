"""Writer ``llamafactory``: sharegpt preference data plus its ``dataset_info.json`` entry.

``format: jsonl`` (the default) writes ``NAME.jsonl`` with image paths, relative to ``dataset_dir``
when the image lies inside it and absolute otherwise, so they resolve when LLaMA-Factory trains with
``dataset_dir`` set to this folder (media_dir defaults to dataset_dir), from any working directory.

``format: parquet`` writes ``NAME/`` as a Hub-ready folder (``parquet_folder.py``): the images
embedded with the features of the Hub's preference sets, so LLaMA-Factory can mix it with ``rlhf_v``
and the like (a path-based JSONL cannot: "The features can't be aligned because the key _images
..."), sharded, with a dataset card. The entry names the ``NAME/data`` folder.

``sft: true`` also writes ``NAME_sft.jsonl``, a supervised (sharegpt) set of the conversations the
strategy offers beside its pairs (``Pair.sft``; STIC's description-infused instructions), with image
paths as above, registered as ``NAME_sft``. Pairs without one are not in it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, show
from seva_plugin.interfaces import Writer, WriteResult
from seva_plugin.pipeline.files import atomic_write_json, atomic_write_lines, file_target, locked, write_errors
from seva_plugin.plugins.writers.card import card
from seva_plugin.plugins.writers.embedding import file_stem, save_embedded
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


def dataset_entry(file_name: str) -> dict[str, Any]:
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    }


def sft_entry(file_name: str) -> dict[str, Any]:
    """A supervised sharegpt set with images (``output.sft``)."""
    return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"}}


@dataclass
class LlamaFactoryWriter(Writer):
    name = "llamafactory"
    dataset_dir: str  # supplied from output.dataset_dir
    dataset_name: str  # supplied from output.name
    image_paths: str = "auto"  # jsonl: auto | relative | absolute
    format: str = "jsonl"  # jsonl (image paths) | parquet (images embedded, sharded, with a dataset card)
    shard_size: int = 1000  # parquet: pairs per shard file
    license: str = "unknown"  # parquet: the card's licence, a Hub licence id
    sft: bool = False  # also NAME_sft.jsonl: the SFT conversations the strategy offers (STIC's stage 2), registered as NAME_sft

    def __post_init__(self) -> None:
        if self.image_paths not in ("auto", "relative", "absolute"):
            raise ConfigError(f"output.image_paths must be auto, relative or absolute, got {show(self.image_paths)}.")
        if self.format not in FORMATS:
            raise ConfigError(f"output.format must be jsonl or parquet, got {show(self.format)}.")
        self.folder = (
            ParquetFolder(os.path.join(self.dataset_dir, self.dataset_name), sharegpt_features(), self.shard_size) if self.format == "parquet" else None
        )
        self.entry = dataset_entry(f"{self.dataset_name}/{DATA}" if self.folder else f"{self.dataset_name}.jsonl")
        self.info_path = os.path.join(self.dataset_dir, "dataset_info.json")
        self.entries = {self.dataset_name: self.entry}
        if self.sft:
            self.entries[f"{self.dataset_name}_sft"] = sft_entry(f"{self.dataset_name}_sft.jsonl")

    def _read_info(self) -> dict[str, Any]:
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
        info = self._read_info()
        for name, entry in self.entries.items():
            existing = info.get(name)
            if existing is not None and existing != entry and not overwrite:
                raise ConfigError(
                    f"{self.info_path} already has a different entry '{name}': {json.dumps(existing)}. Choose another output.name or set output.overwrite=true."
                )
        if self.folder:
            self.folder.check_target(overwrite)

    def _image_path(self, path: str | dict[str, Any], record_id: str, index: int) -> str:
        if isinstance(path, dict):  # an embedded image (exporting a Parquet set): JSONL needs a file
            path = save_embedded(path, os.path.join(self.dataset_dir, f"{self.dataset_name}_images"), file_stem(record_id, index))
        root = os.path.abspath(self.dataset_dir)
        inside = os.path.commonpath([root, path]) == root
        if self.image_paths == "relative" or (self.image_paths == "auto" and inside):
            return os.path.relpath(path, root)
        return path

    def record(self, pair: dict[str, Any]) -> dict[str, Any]:
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

    def write(self, pairs: Iterable[dict[str, Any]], overwrite: bool) -> WriteResult:
        """Under the registry's lock: check the entry again (someone may have registered the name
        since the build began), and only then replace the data and merge the entry, so a refusal
        leaves everything as it was."""
        with locked(self.info_path), tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
            self.prepare(overwrite)
            if self.sft:
                pairs = self._spool_sft(pairs, spool)
            result = self._write_parquet(pairs) if self.folder else self._write_jsonl(pairs)
            entries = dict(self.entries)
            if self.sft:
                result.details["sft"] = self._write_sft(spool)
                if not result.details["sft"]["records"]:
                    entries.pop(f"{self.dataset_name}_sft")  # nothing to train on: not registered
            with write_errors(self.info_path):
                info = self._read_info()
                info.update(entries)
                atomic_write_json(self.info_path, info)
        result.registry = self.info_path
        return result

    def finish(self, manifest: dict[str, Any]) -> None:
        """Parquet: the dataset card, once the manifest holds the counts and provenance."""
        if self.folder:
            data = manifest["files"]["data"]
            usage = USAGE.format(name=self.dataset_name)
            self.folder.write_card(card(self.dataset_name, manifest, sharegpt_features(), data, licence=self.license, tags=["llama-factory"], usage=usage))

    def _write_parquet(self, pairs: Iterable[dict[str, Any]]) -> WriteResult:
        assert self.folder is not None
        skipped: list[dict[str, Any]] = []
        data = self.folder.write(embedded_rows(pairs, sharegpt_row, skipped))
        return WriteResult(data.pop("path"), data.pop("records"), "parquet", skipped=skipped, details=data)

    def _spool_sft(self, pairs: Iterable[dict[str, Any]], spool: Any) -> Iterator[dict[str, Any]]:
        """Pass the pairs on, writing each one's SFT row (if it has one) to ``spool``: one pass over the pairs."""
        for pair in pairs:
            if pair.get("sft"):
                images = [self._image_path(p, pair["id"], k) for k, p in enumerate(pair["images"])]
                spool.write(json.dumps({"id": pair["id"], "conversations": pair["sft"], "images": images}, ensure_ascii=False) + "\n")
            yield pair

    def _write_sft(self, spool: Any) -> dict[str, Any]:
        """``NAME_sft.jsonl`` from the spooled rows (streamed); none written when no pair had one."""
        name = f"{self.dataset_name}_sft"
        if not spool.tell():
            return {"records": 0, "dataset": name, "note": "no pair offered an SFT conversation (Pair.sft), so none was written or registered"}
        spool.seek(0)
        path = os.path.join(self.dataset_dir, f"{name}.jsonl")
        count = 0

        def lines() -> Iterator[str]:
            nonlocal count
            for line in spool:
                count += 1
                yield line

        sha = atomic_write_lines(path, lines())
        return {"path": path, "records": count, "sha256": sha, "dataset": name}

    def _write_jsonl(self, pairs: Iterable[dict[str, Any]]) -> WriteResult:
        data_path = os.path.join(self.dataset_dir, self.entry["file_name"])
        count = 0

        def lines() -> Iterator[str]:
            nonlocal count
            for pair in pairs:
                count += 1
                yield json.dumps(self.record(pair), ensure_ascii=False) + "\n"

        sha = atomic_write_lines(data_path, lines())
        return WriteResult(data_path, count, "jsonl", details={"sha256": sha})


@hookimpl
def register_writers(register: Any) -> None:
    register(LlamaFactoryWriter)
