"""The bench's Ray scaling row at a toy size: both builds run, their data files are byte-identical, R parses.

No timing is asserted (on shared cores 2 workers can be slower than 1)."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

pytest.importorskip("ray")
pytest.importorskip("llamafactory")


@pytest.mark.slow
def test_ray_scaling_row_builds_the_same_bytes_on_two_workers(tmp_path):
    cmd = [
        sys.executable, "-m", "benchmarks.bench", "--only", "ray", "--out", str(tmp_path / "bench"), "--new-tokens", "2",
        "--ray-prompts", "8", "--ray-batch", "2", "--ray-repeats", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert re.search(r"1 worker \S+ s, 2 Ray workers \S+ s: speedup \S+ .*data byte-identical: yes", proc.stdout), proc.stdout
    ray_speedup = float(re.search(r" ray_speedup=(\S+)", proc.stdout.strip().splitlines()[-1]).group(1))
    assert math.isfinite(ray_speedup) and ray_speedup > 0
