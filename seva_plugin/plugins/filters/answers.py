"""Filters ``empty`` and ``identical``: the official SeVa code drops pairs whose answers are equal."""

from __future__ import annotations

import re
from dataclasses import dataclass

from seva_plugin import hookimpl
from seva_plugin.interfaces import Filter
from seva_plugin.pipeline.text import normalise


@dataclass
class Empty(Filter):
    name = "empty"

    def __call__(self, pair) -> str | None:
        if not normalise(pair.chosen):
            return "empty_chosen"
        if not normalise(pair.rejected):
            return "empty_rejected"
        return None


@dataclass
class Identical(Filter):
    name = "identical"
    ignore_case: bool = False

    def __call__(self, pair) -> str | None:
        a, b = normalise(pair.chosen), normalise(pair.rejected)
        if self.ignore_case:
            a, b = a.lower(), b.lower()
        return "identical" if a == b else None


@dataclass
class Truncated(Filter):
    """Drops pairs where an answer looks cut off mid-sentence (no final punctuation)."""

    name = "truncated"

    def __call__(self, pair) -> str | None:
        ends = re.compile(r"[.!?\"')\]]$")
        if not ends.search(normalise(pair.chosen)) or not ends.search(normalise(pair.rejected)):
            return "truncated"
        return None


@hookimpl
def register_filters(register):
    for cls in (Empty, Identical, Truncated):
        register(cls)
