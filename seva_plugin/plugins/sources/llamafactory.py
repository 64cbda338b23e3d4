"""Source ``llamafactory``: any multimodal dataset registered in a ``dataset_info.json``.

The dataset entry is parsed by LLaMA-Factory's own parser, so columns, tags and formatting
(sharegpt, alpaca, openai) mean exactly what they mean to ``llamafactory-cli train``.
The prompt is the first user turn; images resolve against ``media_dir`` as LLaMA-Factory does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, show
from seva_plugin.interfaces import Source
from seva_plugin.pipeline.records import Reject
from seva_plugin.plugins.sources.common import Malformed, guarded, iter_json_rows, make_record, record_id, reject_id, text_field


@dataclass
class LlamaFactorySource(Source):
    name = "llamafactory"
    dataset: str
    dataset_dir: str = "data"
    media_dir: str | None = None  # defaults to dataset_dir, as in LLaMA-Factory

    def _attr(self):
        from llamafactory.data.parser import get_dataset_list

        if not os.path.isfile(os.path.join(self.dataset_dir, "dataset_info.json")):
            raise ConfigError(f"no dataset_info.json in source.dataset_dir '{self.dataset_dir}'.")
        try:
            (attr,) = get_dataset_list([self.dataset], self.dataset_dir)
        except ValueError as exc:
            raise ConfigError(f"source.dataset '{self.dataset}': {exc}") from None
        if attr.load_from != "file":
            raise ConfigError(
                f"source.dataset '{self.dataset}' is loaded from {attr.load_from}; only local files are supported. Download it and register its file_name."
            )
        if not attr.images:
            raise ConfigError(f"source.dataset '{self.dataset}' has no 'images' column in dataset_info.json.")
        return attr

    def _files(self, attr) -> list[str]:
        path = os.path.join(self.dataset_dir, attr.dataset_name)
        if os.path.isdir(path):
            return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".json", ".jsonl")))
        if not os.path.isfile(path):
            raise ConfigError(f"source.dataset '{self.dataset}': file not found: {path}")
        return [path]

    def _prompt(self, attr, row: dict):
        """The first user turn (sharegpt, openai) or prompt and query (alpaca); wrong types are :class:`Malformed`."""
        if attr.formatting == "alpaca":
            parts = [text_field(row, key) if key else None for key in (attr.prompt, attr.query)]
            return "\n".join(p for p in parts if p)
        turns = row.get(attr.messages)
        if turns is None:
            return None
        if not isinstance(turns, list):
            raise Malformed(f"{attr.messages} must be a list of turns, got {show(turns)}")
        for k, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise Malformed(f"{attr.messages}[{k}] must be an object, got {show(turn)}")
            if turn.get(attr.role_tag) == attr.user_tag:
                return text_field(turn, attr.content_tag, f"{attr.messages}[{k}].{attr.content_tag}")
        return None

    def _record(self, attr, row: dict, fallback: str, media_dir: str):
        rid = record_id(row.get("id"), fallback)
        return make_record(rid, self._prompt(attr, row), row.get(attr.images), media_dir, {"dataset": self.dataset})

    def iter_records(self):
        attr = self._attr()
        media_dir = self.media_dir or self.dataset_dir
        for path in self._files(attr):
            stem = os.path.splitext(os.path.basename(path))[0]
            for index, row in iter_json_rows(path):
                if isinstance(row, Reject):
                    yield row
                    continue
                fallback = f"{stem}-{index}"
                yield guarded(reject_id(row.get("id"), fallback), self._record, attr, row, fallback, media_dir)


@hookimpl
def register_sources(register):
    register(LlamaFactorySource)
