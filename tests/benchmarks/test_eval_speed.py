"""``python -m benchmarks.bench --only eval`` on a tiny setting: the probes figure, its BENCH line, and the
one-probe-at-a-time loop giving seva eval's predictions. No timing is asserted."""

from __future__ import annotations

import math
import re

import pytest

pytest.importorskip("llamafactory")


@pytest.mark.slow  # a benchmark run: about a minute on 2 shared cores
def test_only_eval_prints_the_table_and_the_bench_line(tmp_path, capsys):
    from benchmarks import bench

    code = bench.main(["--only", "eval", "--out", str(tmp_path), "--eval-images", "4", "--eval-repeats", "1", "--eval-new-tokens", "3", "--skip-vllm"])
    out = capsys.readouterr().out
    assert code == 0
    last = out.strip().splitlines()[-1]
    match = re.search(r" eval_speedup=(\S+)", last)
    assert last.startswith("BENCH ") and match and math.isfinite(float(match.group(1))) and float(match.group(1)) > 0, last
    assert "72 probes" in out  # 4 images x 3 settings x (3 present + 3 absent)
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith(("seva eval, hf", "one probe at a time"))}
    assert rows["seva eval, hf"].endswith(" yes") and rows["one probe at a time"].endswith(" yes")  # the same predictions
