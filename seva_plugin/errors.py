"""Errors a user can act on. Each message names the offending value and what is allowed."""

from __future__ import annotations

import difflib


class SevaError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(SevaError):
    """A build config, recipe or plugin parameter is wrong."""


class NothingKept(SevaError):
    """A build finished with no pairs: every input rejected or every pair dropped. Its rejects file
    and manifest are written, nothing is registered; ``result`` is the build's result."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class RecordError(SevaError):
    """One input record cannot be used; the build reports it and goes on.

    ``code`` is a short category for counting (``missing_file``, ``not_an_image``, ...)."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.code = code


SHOW_LIMIT = 120  # characters of a value an error message shows


def show(value, limit: int = SHOW_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: a message never prints a
    huge value (a 100,000-character prompt, the expansion of a YAML alias bomb). Containers are
    summarised without building their whole repr."""
    if isinstance(value, (list, tuple, dict, set)) and _size_over(value, limit):
        kind = type(value).__name__
        return f"<a {kind} of {len(value)} items, too large to show>"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def short(text: object, limit: int = 500) -> str:
    """A message (an exception's text, a reason) cut to ``limit`` characters, saying how long it was."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def _size_over(value, limit: int) -> bool:
    """Whether ``repr(value)`` would be longer than ``limit``, looking at no more than needed."""
    budget = [limit]

    def walk(v, depth: int) -> bool:
        if depth > 20:
            return True
        items = v.items() if isinstance(v, dict) else v if isinstance(v, (list, tuple, set)) else None
        if items is None:
            budget[0] -= len(str(v)[: limit + 1]) + 2
            return budget[0] < 0
        for item in items:
            budget[0] -= 2
            if budget[0] < 0 or walk(item, depth + 1):
                return True
        return False

    return walk(value, 0)


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word)[:SHOW_LIMIT], list(choices), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown(what: str, word: str, choices, where: str = "") -> ConfigError:
    allowed = ", ".join(sorted(map(str, choices))) or "(none)"
    place = f" in {where}" if where else ""
    word = str(word)
    shown = word if len(word) <= SHOW_LIMIT else show(word)[1:]
    return ConfigError(f"unknown {what} '{shown}'{place}.{did_you_mean(word, choices)} Allowed: {allowed}.")
