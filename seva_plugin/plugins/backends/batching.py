"""How a backend groups the requests of one call: shared by every backend, so they batch alike."""

from __future__ import annotations

from collections.abc import Sequence

from seva_plugin.interfaces import GenerationRequest


def runs_by_view(requests: Sequence[GenerationRequest]) -> list[list[GenerationRequest]]:
    """Consecutive requests with the same view (their images are processed together)."""
    runs: list[list[GenerationRequest]] = []
    for r in requests:
        if runs and runs[-1][0].view == r.view:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def inputs_key(requests: Sequence[GenerationRequest]) -> tuple:
    """What determines a call's model inputs: the record objects, views, prefixes and answer counts
    (the key under which inputs prepared in the prefetch thread are found again)."""
    return tuple((id(r.record), r.view.key(), r.prefix, r.n) for r in requests)
