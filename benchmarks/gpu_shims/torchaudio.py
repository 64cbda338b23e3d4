"""Stand-in for ``torchaudio`` on a GPU machine without it (``benchmarks/gpu.py``): LLaMA-Factory's
multimodal plugin imports it for audio inputs, which image-text generation never has."""

from types import SimpleNamespace


def _missing(*args, **kwargs):
    raise ImportError("torchaudio is not installed here: benchmarks/gpu_shims stands in for it (no audio inputs)")


load = _missing
functional = SimpleNamespace(resample=_missing)
__version__ = "0.0.0+shim"
