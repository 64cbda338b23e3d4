"""CSR's visual score: ``100 * cos(image, sentence)`` with a ``transformers`` CLIPModel.

The official code scores with ``openai/clip-vit-large-patch14-336``. The strategy owns its scorer
(``Csr.clip``): two strategies never share, or overwrite, one's settings.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from seva_plugin.errors import ConfigError


class ClipScorer:
    """``100 * cos(image, text)`` with a ``transformers`` CLIPModel, loaded once on first use."""

    def __init__(self, path: str, device: str, batch_size: int = 64):
        self.path = path
        self.device = device
        self.batch_size = batch_size

    @cached_property
    def loaded(self) -> tuple[Any, Any, int]:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        try:
            model: Any = CLIPModel.from_pretrained(self.path)
            processor: Any = CLIPProcessor.from_pretrained(self.path)
        except OSError as exc:
            raise ConfigError(f"strategy.clip_model: could not load CLIP from {self.path}: {exc}") from None
        dtype = torch.float16 if str(self.device).startswith("cuda") else torch.float32
        model = model.to(device=self.device, dtype=dtype).eval()
        max_len = getattr(model.config.text_config, "max_position_embeddings", 77)
        return model, processor, max_len

    def image_features(self, images: list[Any]) -> Any:
        """Unit image embeddings, one row per image."""
        import torch

        model, processor, _ = self.loaded
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            feats = _embedding(model.get_image_features(pixel_values=pixels.to(model.device, model.dtype)))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()

    def text_features(self, texts: list[str]) -> Any:
        import torch

        model, processor, max_len = self.loaded
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = processor.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True, max_length=max_len)
            # padded lists to tensors here: return_tensors="pt" walks every id in Python first (4% of a tiny CSR build's CPU)
            ids, mask = (torch.tensor(batch[key], device=model.device) for key in ("input_ids", "attention_mask"))
            with torch.inference_mode():
                feats = _embedding(model.get_text_features(input_ids=ids, attention_mask=mask))
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0)

    def text_scores(self, texts: list[str], image_features: list[Any]) -> list[float]:
        """``100 * cos`` of each text with its record's images (mean over the record's images)."""
        if not texts:
            return []
        feats = self.text_features(texts)
        return [float(100.0 * (img @ t).mean()) for t, img in zip(feats, image_features, strict=True)]


def _embedding(output: Any) -> Any:
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    return output if hasattr(output, "dim") else output.pooler_output
