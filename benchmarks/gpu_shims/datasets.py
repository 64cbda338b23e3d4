"""Stand-in for ``datasets`` on a GPU machine without it (``benchmarks/gpu.py``): LLaMA-Factory imports
these names on its inference path but generation never calls them. Anything that does raises."""

from enum import Enum


class DownloadMode(str, Enum):
    REUSE_DATASET_IF_EXISTS = "reuse_dataset_if_exists"
    REUSE_CACHE_IF_EXISTS = "reuse_cache_if_exists"
    FORCE_REDOWNLOAD = "force_redownload"


def _missing(*args, **kwargs):
    raise ImportError("datasets is not installed here: benchmarks/gpu_shims stands in for it on the hf backend's generation path only")


class Dataset:
    def __init__(self, *args, **kwargs):
        _missing()


class DatasetDict(dict):
    def __init__(self, *args, **kwargs):
        _missing()


class IterableDataset(Dataset):
    pass


class IterableDatasetDict(DatasetDict):
    pass


load_dataset = load_from_disk = concatenate_datasets = interleave_datasets = _missing
