"""Errors a user can act on. Each message names the offending value and what is allowed."""

from __future__ import annotations

import difflib


class SevaError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(SevaError):
    """A build config, recipe or plugin parameter is wrong."""


class RecordError(SevaError):
    """One input record cannot be used; the build reports it and goes on.

    ``code`` is a short category for counting (``missing_file``, ``not_an_image``, ...)."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.code = code


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown(what: str, word: str, choices, where: str = "") -> ConfigError:
    allowed = ", ".join(sorted(choices)) or "(none)"
    place = f" in {where}" if where else ""
    return ConfigError(f"unknown {what} '{word}'{place}.{did_you_mean(word, choices)} Allowed: {allowed}.")
