"""``python -m benchmarks.agreement``: how often backends ``hf`` and ``vllm`` build the same SeVa data, per family and dtype.

For each family vLLM serves, the twin as it ships (``seva_plugin.dev.tiny_models``: the real
checkpoint's generation config, chat template and dtype; random weights, tiny sizes) is built with
the family's shipped build template (``data_templates/seva_<family>_t500.yaml``: strategy, noise
step, ``batch_size``, ``max_new_tokens``, pixel settings, filters), the model and the source
replaced by the twin and ``--records`` prompts in SeVa's mix on photo-like images, once per
``--dtypes`` entry and backend. Per record (from each build's journal, so a pair the filters drop
still counts): chosen answers equal, rejected answers equal, and both (the pair). Prints a table
and writes the figures, with the engines as each build's manifest names them, to ``--out``.
Greedy answers are compared: sampled ones come from different random streams on each backend.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import yaml

from benchmarks.common import log, machine, make_images, quiet, write_prompts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# family -> (twin builder in seva_plugin.dev.tiny_models, its keywords, build template); head_dim 32 where the
# builder takes it: vLLM's CPU attention runs no smaller head (the other twins have 32 already)
FAMILIES = {
    "llava": ("build_tiny_llava", {"head_dim": 32}, "seva_llava_t500.yaml"),
    "llava_next": ("build_tiny_llava_next", {"head_dim": 32}, "seva_llava_next_t500.yaml"),
    "qwen2_vl": ("build_tiny_qwen2_vl", {"head_dim": 32}, "seva_qwen2_vl_t500.yaml"),
    "qwen2_5_vl": ("build_tiny_qwen2_5_vl", {}, "seva_qwen2_5_vl_t500.yaml"),
    "qwen3_vl": ("build_tiny_qwen3_vl", {}, "seva_qwen3_vl_t500.yaml"),
    "internvl3": ("build_tiny_internvl3", {}, "seva_internvl3_t500.yaml"),
}
VLLM_KEYS = {"max_model_len": 2048, "enforce_eager": True}  # every twin's context holds 2048 positions; eager on CPU


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.agreement", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=24, help="prompts per build (default: 24)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES), help="default: all")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"])
    p.add_argument("--image-size", type=int, default=336, help="side of the photo-like test images in pixels (default: 336)")
    p.add_argument("--work", default="agreement_out", help="work folder: twins, images, builds (default: agreement_out)")
    p.add_argument("--out", default=None, help="JSON with the figures (default: <work>/agreement.json)")
    return p.parse_args(argv)


def build_config(family: str, twin: str, prompts: str, out: str, backend: str, dtype: str) -> dict:
    """The family's shipped build template with the twin, the prompts, ``backend`` and ``dtype``."""
    with open(os.path.join(REPO, "data_templates", FAMILIES[family][2]), encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    keys = {**config["backend"], "name": backend, "dtype": dtype, **(VLLM_KEYS if backend == "vllm" else {})}
    return {
        **config,
        "model": twin,
        "source": {"file": prompts},
        "backend": keys,
        "output": {"dataset_dir": out, "name": f"{family}_{dtype}_{backend}", "overwrite": True},
    }


def answers(out: str, name: str) -> dict[str, tuple]:
    """id -> (chosen, rejected) for every record the build answered, pairs and dropped pairs alike."""
    with open(os.path.join(out, ".seva", f"{name}.journal.jsonl"), encoding="utf-8") as fh:
        entries = [json.loads(line) for line in fh]
    return {e["id"]: (e.get("chosen"), e.get("rejected")) for e in entries if e.get("kind") in ("pair", "drop") and "chosen" in e}


def compare(hf: dict[str, tuple], vllm: dict[str, tuple]) -> dict[str, int]:
    ids = sorted(set(hf) | set(vllm))
    both = [i for i in ids if i in hf and i in vllm]
    return {
        "records": len(ids),
        "answered_by_both": len(both),
        "chosen_equal": sum(hf[i][0] == vllm[i][0] for i in both),
        "rejected_equal": sum(hf[i][1] == vllm[i][1] for i in both),
        "pairs_equal": sum(hf[i] == vllm[i] for i in both),
    }


def measure(family: str, dtype: str, twin: str, prompts: str, work: str) -> dict:
    from seva_plugin.pipeline.build import build

    found, engines = {}, {}
    for backend in ("hf", "vllm"):
        out = os.path.join(work, "builds", family, dtype, backend)
        config = build_config(family, twin, prompts, out, backend, dtype)
        log(f"{family} {dtype} {backend}")
        with quiet():
            result = build(config, progress=False)
        with open(result.manifest_file, encoding="utf-8") as fh:
            engines[backend] = json.load(fh)["engine"]
        found[backend] = answers(out, config["output"]["name"])
    return {"family": family, "dtype": dtype, **compare(found["hf"], found["vllm"]), "engines": engines}


def main(argv=None) -> int:
    args = parse_args(argv)
    import seva_plugin.dev.tiny_models as tiny

    work = os.path.abspath(args.work)
    images = make_images(os.path.join(work, "images"), args.records, args.image_size)
    prompts = write_prompts(os.path.join(work, "prompts.jsonl"), images, args.records)
    rows = []
    for family in args.families:
        builder, keys, _ = FAMILIES[family]
        twin = os.path.join(work, "twins", family)
        if not os.path.isfile(os.path.join(twin, "config.json")):
            with quiet():
                getattr(tiny, builder)(twin, seed=0, **keys)
        for dtype in args.dtypes:
            rows.append(measure(family, dtype, twin, prompts, work))
            log(json.dumps({k: v for k, v in rows[-1].items() if k != "engines"}))  # a run cut short still shows what it measured
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "records": args.records,
        "image_size": args.image_size,
        "rows": rows,
    }
    path = args.out or os.path.join(work, "agreement.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    print(f"hf vs vllm, greedy SeVa builds, {args.records} records each; {report['machine']}; {report['date']}")
    print("| family | dtype | pairs equal | chosen equal | rejected equal | engines |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        n = r["answered_by_both"]
        engines = ", ".join(f"{e['engine']} {e['version']} ({e['dtype']}, {e['device']})" for e in r["engines"].values())
        print(f"| {r['family']} | {r['dtype']} | {r['pairs_equal']}/{n} | {r['chosen_equal']}/{n} | {r['rejected_equal']}/{n} | {engines} |")
    print(f"figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
