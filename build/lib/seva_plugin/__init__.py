"""Self-supervised visual preference data (SeVa, CSR) for LLaMA-Factory."""

from seva_plugin.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
