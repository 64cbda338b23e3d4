"""The demo: a procedurally drawn shapes world where SeVa can be watched end to end on a CPU.

``run_demo(out_dir)`` is what ``seva demo`` (and ``make demo``) runs; see ``docs/demo.md``.
"""

from __future__ import annotations


def run_demo(out_dir: str = "demo_out", small: bool = False, seed: int = 0, strategy: str = "seva") -> dict:
    """Teach a tiny LLaVA the world, build pairs (SeVa, STIC or RLAIF-V), train DPO, print and return the report."""
    from seva_plugin.commands.demo.run import run_demo as _run

    return _run(out_dir, small=small, seed=seed, strategy=strategy)


__all__ = ["run_demo"]
