"""How loud the libraries a command runs are.

vLLM, transformers and LLaMA-Factory log at INFO by default: 92 lines in a tiny model's vLLM build
here (31 at WARNING), which push the progress bar and the build's own messages out of sight. ``seva`` commands call ``quiet_libraries``
first: WARNING and above, unless ``--verbose``. The levels go through each library's environment
variable (read when it is imported, and inherited by the processes it starts: vLLM's engine, Ray's
workers) and, for a library already imported, its logger. A variable the user set is kept.

``hide_known_noise`` drops one warning that is no fault of the user's and that they cannot act on:
transformers' "The `use_fast` parameter is deprecated", which LLaMA-Factory's ``load_tokenizer``
triggers (it passes ``use_fast`` to ``AutoProcessor.from_pretrained``) in every process that loads a
processor. Library users get that filter too (``Renderer.load`` installs it); their log levels are
theirs.
"""

from __future__ import annotations

import logging
import os
import sys

USE_FAST = "The `use_fast` parameter is deprecated"
IMAGE_PROCESSING_LOGGER = "transformers.models.auto.image_processing_auto"
_quiet = False  # quiet_libraries ran without verbose: Ray workers' output stays out of the progress bar too


def quiet() -> bool:
    """Whether a command asked for the libraries' warnings only (``quiet_libraries`` without ``verbose``)."""
    return _quiet


def quiet_libraries(verbose: bool = False) -> None:
    """vLLM, transformers and LLaMA-Factory at WARNING (INFO with ``verbose``), best set before they are imported."""
    global _quiet
    _quiet = not verbose
    level = "INFO" if verbose else "WARNING"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", level)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", level.lower())
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", level)
    # a library imported already reads its variable no more: set its logger
    loggers = {"vllm": "VLLM_LOGGING_LEVEL", "transformers": "TRANSFORMERS_VERBOSITY", "llamafactory": "LLAMAFACTORY_VERBOSITY"}
    for name, variable in loggers.items():
        if name in sys.modules:
            try:
                logging.getLogger(name).setLevel(os.environ[variable].upper())
            except ValueError:  # a level name logging does not know: the library's own reading decides
                pass
    hide_known_noise()


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.msg)


def hide_known_noise() -> None:
    """Drop transformers' ``use_fast`` deprecation warning (see the module's docstring). Idempotent."""
    logger = logging.getLogger(IMAGE_PROCESSING_LOGGER)
    if not any(isinstance(f, _DropMessage) and f.text == USE_FAST for f in logger.filters):
        logger.addFilter(_DropMessage(USE_FAST))
