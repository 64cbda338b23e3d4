"""Seeding: every random draw of a build is a function of the build seed, the record id, the view
id and the image index, never of batch layout, order, worker or resume."""

from __future__ import annotations

import hashlib


def record_seed(seed: int, record_id: str) -> int:
    """A per-record seed that does not depend on batch layout, order or resume."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def view_generator(seed: int, view: int, image: int):
    """The generator for image ``image`` of view ``view`` of a record with ``seed``: the same
    wherever the view is rebuilt (a batch, a worker, a resume, ``seva inspect``)."""
    import torch

    return torch.Generator().manual_seed((seed + 1_000_003 * view + 7919 * image) % 2**63)


def sample_seed(seed: int, k: int) -> int:
    """The seed of the ``k``-th sampled answer of a request with ``seed``."""
    digest = hashlib.sha256(f"sample:{seed}:{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF
