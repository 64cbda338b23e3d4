"""Writer ``llamafactory``: sharegpt preference JSONL plus its ``dataset_info.json`` entry.

Image paths are written relative to ``dataset_dir`` when the image lies inside it and absolute
otherwise, so they resolve when LLaMA-Factory trains with ``dataset_dir`` set to this folder
(media_dir defaults to dataset_dir), from any working directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.build.files import atomic_write_json, atomic_write_lines, locked, write_errors
from seva_plugin.errors import ConfigError
from seva_plugin.interfaces import Writer


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
    image_paths: str = "auto"  # auto | relative | absolute

    def __post_init__(self):
        if self.image_paths not in ("auto", "relative", "absolute"):
            raise ConfigError(f"output.image_paths must be auto, relative or absolute, got {self.image_paths!r}.")
        self.entry = dataset_entry(f"{self.dataset_name}.jsonl")
        self.info_path = os.path.join(self.dataset_dir, "dataset_info.json")

    def _read_info(self) -> dict:
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

    def _image_path(self, path: str) -> str:
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
            "images": [self._image_path(p) for p in pair["images"]],
        }
        for key in ("provenance", "meta", "scores"):
            if pair.get(key):
                out[key] = pair[key]
        return out

    def write(self, pairs, overwrite: bool) -> dict:
        """Write the data file atomically, then merge the entry into dataset_info.json under a lock."""
        data_path = os.path.join(self.dataset_dir, self.entry["file_name"])
        count = 0

        def lines():
            nonlocal count
            for pair in pairs:
                count += 1
                yield json.dumps(self.record(pair), ensure_ascii=False) + "\n"

        sha = atomic_write_lines(data_path, lines())
        with locked(self.info_path), write_errors(self.info_path):
            self.prepare(overwrite)
            info = self._read_info()
            info[self.dataset_name] = self.entry
            atomic_write_json(self.info_path, info)
        return {"data": {"path": data_path, "sha256": sha, "records": count}, "dataset_info": self.info_path}


@hookimpl
def register_writers(register):
    register(LlamaFactoryWriter)
