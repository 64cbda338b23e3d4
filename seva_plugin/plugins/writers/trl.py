"""Writer ``trl``: TRL's conversational preference format for vision, as a Hub-ready Parquet folder.

``dataset_dir/NAME/`` holds ``README.md`` and ``data/train-*.parquet`` with the columns TRL's
``DPOTrainer`` reads (``rows.trl_features()``): ``prompt``, ``chosen`` and ``rejected`` as message lists
(the prompt's content is ``{"type": "image"}`` and ``{"type": "text", "text": ...}`` items), and
``images`` as ``Sequence(Image())``. ``datasets.load_dataset("dataset_dir/NAME", split="train")``
loads it. Nothing is registered in ``dataset_info.json``: LLaMA-Factory reads the ``llamafactory``
writer's formats.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.interfaces import Writer, WriteResult
from seva_plugin.plugins.writers.card import card
from seva_plugin.plugins.writers.parquet_folder import ParquetFolder, embedded_rows
from seva_plugin.plugins.writers.rows import trl_features, trl_row

USAGE = """Train with TRL (vision DPO):

```python
from datasets import load_dataset
from trl import DPOConfig, DPOTrainer

dataset = load_dataset("path/to/{name}", split="train")
trainer = DPOTrainer(model=model, args=DPOConfig(output_dir="out"), train_dataset=dataset, processing_class=processor)
trainer.train()
```

The processor's chat template must accept list content (`{{"type": "image"}}` / `{{"type": "text"}}` items),
as the chat templates of the Hugging Face LLaVA and Qwen2-VL processors do."""


@dataclass
class TrlWriter(Writer):
    name = "trl"
    dataset_dir: str  # supplied from output.dataset_dir
    dataset_name: str  # supplied from output.name
    shard_size: int = 1000  # pairs per shard file
    license: str = "unknown"  # the card's licence, a Hub licence id

    def __post_init__(self) -> None:
        self.folder = ParquetFolder(os.path.join(self.dataset_dir, self.dataset_name), trl_features(), self.shard_size)

    def prepare(self, overwrite: bool) -> None:
        self.folder.check_target(overwrite)

    def write(self, pairs: Iterable[dict[str, Any]], overwrite: bool) -> WriteResult:
        self.prepare(overwrite)  # again: the folder may have changed since the build began
        skipped: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        data = self.folder.write(embedded_rows(pairs, trl_row, skipped, counts))
        details = {**data, "normalised_images": counts["normalised"]}
        return WriteResult(details.pop("path"), details.pop("records"), "trl", skipped=skipped, details=details)

    def finish(self, manifest: dict[str, Any]) -> None:
        data = manifest["files"]["data"]
        usage = USAGE.format(name=self.dataset_name)
        self.folder.write_card(card(self.dataset_name, manifest, trl_features(), data, licence=self.license, tags=["trl"], usage=usage))


@hookimpl
def register_writers(register: Any) -> None:
    register(TrlWriter)
