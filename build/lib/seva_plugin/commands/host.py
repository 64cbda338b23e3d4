"""Running the host, LLaMA-Factory, the way a user does: its own CLI, in this environment."""

from __future__ import annotations

import os
import shutil
import sys

from seva_plugin.errors import ConfigError


def llamafactory_cli() -> str:
    """The ``llamafactory-cli`` installed next to this Python (the same environment), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "llamafactory-cli")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    found = shutil.which("llamafactory-cli")
    if not found:
        raise ConfigError("llamafactory-cli not found next to the Python interpreter or on PATH; install llamafactory in this environment.")
    return found
