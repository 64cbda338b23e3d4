"""The GPU bench's pieces on CPU: forced stop lengths, decode-slot accounting, the stand-ins, and a dry run
(SeVa rows, then the strategies: CSR, and any of stic and rlaifv this checkout registers).

No timing is asserted. The dry run (``gpu.sh --tiny``) goes through the same code as on a GPU:
LLaMA-Factory's pieces, a LLaVA-shaped random model handed to ``Build`` and both length modes.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys

import pytest

from helpers import REPO

torch = pytest.importorskip("torch")


def test_forced_stops_end_each_row_at_its_length():
    from benchmarks.decode_stats import forced_stops

    lengths, eos, width, vocab = [1, 3, 5], 2, 4, 7
    processor = forced_stops(lengths, eos, width)
    ids = torch.zeros(3, width, dtype=torch.long)
    made = []
    for _ in range(6):
        scores = torch.zeros(3, vocab)
        scores[:, eos] = 10.0  # the model would end at once
        scores[:, 5] = 1.0
        picked = processor(ids, scores).argmax(-1)
        made.append(picked)
        ids = torch.cat([ids, picked[:, None]], dim=1)
    new = torch.stack(made, dim=1).tolist()
    for row, length in zip(new, lengths, strict=True):
        assert row.index(eos) == length, row  # `length` answer tokens, then the end-of-sequence token
        assert eos not in row[:length]


def test_recorder_counts_slots_spent_on_finished_rows():
    from benchmarks.decode_stats import Recorder

    eos, pad = 2, 0

    class Model:
        def generate(self, input_ids, attention_mask, **kwargs):
            new = torch.tensor([[5, 5, eos, pad, pad], [5, 5, 5, 5, 5], [eos, pad, pad, pad, pad]])
            return torch.cat([input_ids, new], dim=1)

    model = Model()
    with Recorder(model, eos) as rec:
        model.generate(input_ids=torch.ones(3, 4, dtype=torch.long), attention_mask=torch.ones(3, 4, dtype=torch.long))
    assert "generate" not in model.__dict__  # the class's method again
    stats = rec.stats()
    # 15 slots; needed: 3 (two tokens + eos), 5 (ran to the cap), 1 (eos at once)
    assert stats == {"rows": 3, "calls": 1, "decode_slots": 15, "answer_tokens": 2 + 5 + 0, "longest": 5, "wasted": 6 / 15}


def test_seva_like_lengths_stay_within_the_cap_and_have_a_tail():
    from benchmarks.gpu import seva_like_length

    rng = random.Random(0)
    lengths = [seva_like_length(rng, 512, 0.02) for _ in range(20000)]
    assert min(lengths) >= 1 and max(lengths) <= 512
    assert 0.4 < sum(n <= 8 for n in lengths) / len(lengths) < 0.6  # OCR-VQA half
    assert 0.01 < sum(n >= 64 for n in lengths) / len(lengths) < 0.03  # the long tail
    assert all(1 <= seva_like_length(rng, 10, 0.5) <= 10 for _ in range(1000))


def test_stand_ins_load_and_refuse_use():
    folder = os.path.join(REPO, "benchmarks", "gpu_shims")
    trl, torchaudio, datasets = (_load(folder, name) for name in ("trl", "torchaudio", "datasets"))
    assert trl.AutoModelForCausalLMWithValueHead and torchaudio.functional.resample
    assert datasets.DownloadMode.REUSE_DATASET_IF_EXISTS.value == "reuse_dataset_if_exists"
    with pytest.raises(ImportError, match="gpu_shims"):
        datasets.load_dataset("x")


def _load(folder, name):
    spec = importlib.util.spec_from_file_location(f"shim_{name}", os.path.join(folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_script_dry_run_on_cpu(tmp_path):
    """``benchmarks/gpu.sh --tiny`` end to end, with the stand-ins forced (as on a machine without datasets, torchaudio, trl)."""
    pytest.importorskip("llamafactory")
    env = {**os.environ, "PYTHON": sys.executable, "SEVA_GPU_SITE": str(tmp_path / "site"), "OMP_NUM_THREADS": "1"}
    cmd = ["bash", os.path.join(REPO, "benchmarks", "gpu.sh"), "--tiny", "--batch-sizes", "2", "--batches", "1", "--shim-all", "--out", str(tmp_path / "gpu")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert "stand-ins for: datasets, torchaudio, trl" in out
    assert "get_infer_args + load_tokenizer + template (Renderer): ok" in out and "load_model (LLaMA-Factory's loader, tiny twin): ok" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("fixed ", "natural "))]
    assert [r[0] for r in rows] == ["fixed", "natural"] and all(len(r) == 10 for r in rows), out
    fixed, natural = rows
    assert fixed[7] == "0%" and float(fixed[6]) == 6.0  # exactly --fixed-tokens, nothing wasted
    assert float(natural[6]) <= 24  # the cap of the tiny run
    assert "SeVa-8k" in out
    strategies = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("csr ", "stic ", "rlaifv "))}
    assert set(strategies) == {"csr", "stic", "rlaifv"}, out
    csr = strategies["csr"]
    assert len(csr) == 10 and int(csr[3]) == 2 and float(csr[7]) > 0  # both records paired, tokens per second measured
    for name in ("stic", "rlaifv"):  # skipped while not registered, measured once they are
        assert "not registered" in " ".join(strategies[name]) or len(strategies[name]) == 10
    assert os.path.isfile(tmp_path / "gpu" / "gpu.json")
