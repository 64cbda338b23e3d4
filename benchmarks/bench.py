"""``python -m benchmarks.bench``: the builder against the loops users would otherwise run.

One process, one model, the same prompts (clean and augmented view of each) and the same fixed
number of new tokens (``min_new_tokens = max_new_tokens = N``, so no method can win by stopping
early) for:

1. the builder: ``Build(config).run()`` with backend ``hf`` (journal, writer and all) on real JPEG
   files, at each batch size of a small sweep; the best one is reported;
2. the official-style loop: one prompt at a time, ``processor(images=..., text=...)`` then
   ``model.generate``, the augmented view noising the processed pixel tensor;
3. LLaMA-Factory's ``ChatModel`` (huggingface engine), one ``chat`` call per prompt and view;
4. bare batched ``model.generate`` on batches processed beforehand (the floor for the builder),
   also over enough batches that filling the prefetch pipeline is amortised (the overhead figure);
5. peak RSS of a cheap build over 2k against 20k source records, each in its own subprocess;
6. augmentation throughput of ``diffusion_noise`` and ``moco`` at 336 px;
7. natural answer lengths: a tiny LLaVA taught to end its answers at 1 to 96 words, built with
   ``hf`` and ``vllm`` (useful tokens per second, decode slots spent on finished rows);
8. Ray scaling: the same build on 2 Ray workers against 1 worker;
9. STIC and RLAIF-V against their official-style loops (``label_free.py``; ``--label-free-only`` runs only these).
10. POPE-style probes: ``seva eval`` on ``hf`` and ``vllm`` against one probe at a time (``eval_speed.py``).

It prints a table, then as its last line
``BENCH speedup_vs_sequential=X speedup_vs_chatmodel=Y overhead=Z rss_ratio=W ray_speedup=R stic_speedup=S rlaifv_speedup=V eval_speedup=E``.
Timed sections run ``--repeats`` times, interleaved, and the fastest run counts (the machine this
was written on is shared and noisy; the minimum is the least disturbed run). Model loading is
outside every timing. See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

from benchmarks import common, eval_speed
from benchmarks.common import (  # noqa: F401 - make_images and write_prompts are used by the tests
    Timing,
    build_config,
    input_side,
    load_average,
    log,
    machine,
    make_images,
    median,
    quiet,
    write_prompts,
)
from benchmarks.methods import prepared_batches, run_bare, run_builder, run_chatmodel, run_sequential


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a LLaVA-style model dir (default: build a tiny offline LLaVA)")
    p.add_argument("--template", default="llava", help="LLaMA-Factory template of --model (default: llava)")
    p.add_argument("--out", default="bench_out", help="work folder (default: bench_out)")
    p.add_argument("--prompts", type=int, default=256, help="prompts; each is answered on the clean and the augmented view (default: 256)")
    p.add_argument("--new-tokens", type=int, default=64, help="exactly this many new tokens per answer, every method (default: 64)")
    p.add_argument(
        "--batch-sizes",
        default="32,64,128",
        help="builder batch sizes to sweep, records per batch; sizes above half the prompts are left out (default: 32,64,128)",
    )
    p.add_argument("--repeats", type=int, default=5, help="runs of each builder / bare measurement, interleaved; the fastest counts (default: 5)")
    p.add_argument("--overhead-batches", type=int, default=8, help="batches (at the best batch size) of the overhead figure Z (default: 8)")
    p.add_argument("--image-size", type=int, help="side of the JPEG files (default: twice the model's input side, 64 px for the tiny model)")
    p.add_argument("--large-image-size", type=int, default=336, help="a second builder run on files this large, reported beside (0: skip; default: 336)")
    p.add_argument("--step", type=int, default=500, help="diffusion noise step (default: 500)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every method (default: 1; see docs/performance.md)")
    p.add_argument("--memory-records", default="2000,20000", help="source sizes of the two memory builds (default: 2000,20000)")
    p.add_argument("--memory-batch", type=int, default=256, help="batch size of the memory builds (default: 256)")
    p.add_argument("--aug-images", type=int, default=32, help="images per augmentation throughput round (default: 32)")
    p.add_argument("--natural-prompts", type=int, default=512, help="prompts of the natural-length builds (default: 512)")
    p.add_argument("--natural-batch-sizes", default="16,128", help="hf batch sizes of the natural-length builds (default: 16,128)")
    p.add_argument("--natural-vllm-batch", type=int, default=256, help="vllm batch size of the natural-length builds (default: 256)")
    p.add_argument("--natural-steps", type=int, default=300, help="training steps of the natural-length model (default: 300)")
    p.add_argument("--natural-repeats", type=int, default=3, help="runs of each natural-length build (default: 3)")
    p.add_argument("--ray-workers", type=int, default=2, help="Ray workers of the scaling figure, against 1 (default: 2)")
    p.add_argument("--ray-prompts", type=int, default=512, help="prompts of the Ray scaling builds (default: 512)")
    p.add_argument("--ray-batch", type=int, default=32, help="batch size of the Ray scaling builds (default: 32)")
    p.add_argument("--ray-repeats", type=int, default=3, help="runs of each Ray scaling build (default: 3)")
    p.add_argument("--trust-remote-code", action="store_true", help="run the --model folder's own Python (auto_map); off by default, as in LLaMA-Factory")
    p.add_argument("--skip-sequential", action="store_true", help="leave out the official-style loop (X is then nan)")
    p.add_argument("--skip-chatmodel", action="store_true", help="leave out the ChatModel loop (Y is then nan)")
    p.add_argument("--skip-memory", action="store_true", help="leave out the memory builds (W is then nan)")
    p.add_argument("--skip-natural", action="store_true", help="leave out the natural-length builds")
    p.add_argument("--skip-vllm", action="store_true", help="leave out the vllm runs (natural-length build, POPE-style probes)")
    p.add_argument("--skip-ray", action="store_true", help="leave out the Ray scaling builds (R is then nan)")
    p.add_argument("--skip-label-free", action="store_true", help="leave out STIC and RLAIF-V against their official-style loops (S and V are then nan)")
    p.add_argument("--label-free-only", action="store_true", help="run only STIC and RLAIF-V against their official-style loops (benchmarks/label_free.py)")
    p.add_argument("--lf-prompts", type=int, default=128, help="images of the STIC builds (default: 128)")
    p.add_argument("--lf-rlaifv-prompts", type=int, default=24, help="prompts of the RLAIF-V builds (default: 24)")
    p.add_argument("--lf-tokens", type=int, default=16, help="exactly this many new tokens per generation in the label-free runs (default: 16)")
    p.add_argument("--lf-samples", type=int, default=10, help="RLAIF-V answers per prompt (default: 10, the official value)")
    p.add_argument("--lf-batch", type=int, default=64, help="records per STIC batch; RLAIF-V takes a quarter, 10 answers each (default: 64)")
    p.add_argument("--lf-repeats", type=int, default=2, help="runs of each label-free measurement, interleaved; the fastest counts (default: 2)")
    # internal: one memory build in a subprocess
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--memory-model", help=argparse.SUPPRESS)
    p.add_argument("--prompts-file", help=argparse.SUPPRESS)
    eval_speed.add_arguments(p)
    return p.parse_args(argv)


def fmt_runs(runs: list[float]) -> str:
    return " ".join(f"{s:.2f}" for s in runs)


def main(argv=None) -> int:
    args = parse_args(argv)
    common.TRUST_REMOTE_CODE = args.trust_remote_code
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.memory_child is not None:
        from benchmarks.memory import memory_child

        memory_child(args)
        return 0

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    root = os.path.abspath(args.out)
    os.makedirs(root, exist_ok=True)
    if args.only_eval:
        return eval_speed.main_only(args, root)
    if args.label_free_only:
        from benchmarks.label_free import main_only

        return main_only(args, root)
    n, tokens = args.prompts, args.new_tokens
    sizes = sorted({int(s) for s in args.batch_sizes.split(",") if 0 < int(s) <= max(1, n // 2)}) or [max(1, n // 2)]
    started, load_start = time.perf_counter(), load_average()

    from seva_plugin.dev.tiny_models import build_tiny_llava

    tiny = os.path.join(root, "tiny_llava")
    if not os.path.isfile(os.path.join(tiny, "config.json")):
        log("building the tiny offline LLaVA")
        with quiet():
            build_tiny_llava(tiny, seed=0)
    model_dir = os.path.abspath(args.model) if args.model else tiny
    template = args.template

    # one loaded model shared by the builder, the official-style loop and bare generate
    from seva_plugin.pipeline.build import Build

    log(f"loading {model_dir}")
    placeholder = write_prompts(os.path.join(root, "placeholder.jsonl"), ["unused.jpg"], 1)
    with quiet():
        probe = Build(build_config(model_dir, template, placeholder, os.path.join(root, "probe"), "probe", sizes[0], tokens, args.step))
        loaded = probe.backend
        model, renderer = loaded.hf_model, loaded.renderer
    tokenizer, processor, tpl = renderer.tokenizer, renderer.processor, renderer.template
    backend, augmenter = probe.backend, probe.augmenter
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen_kwargs = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, eos_token_id=tpl.get_stop_token_ids(tokenizer), pad_token_id=pad)
    image_size = args.image_size or 2 * input_side(processor)

    overhead_n = max(sizes) * max(1, args.overhead_batches)
    log(f"writing {max(n, overhead_n)} prompts, one {image_size} px JPEG file each")
    images = make_images(os.path.join(root, f"images{image_size}"), max(n, overhead_n), image_size)
    prompts = write_prompts(os.path.join(root, f"prompts{image_size}.jsonl"), images, n)
    rows = [json.loads(line) for line in open(prompts, encoding="utf-8")]

    from seva_plugin.pipeline.images import load_rgb
    from seva_plugin.pipeline.records import LoadedRecord
    from seva_plugin.pipeline.views import record_seed
    from seva_plugin.plugins.sources.jsonl import JsonlSource

    def load_records(path: str) -> list:
        return [LoadedRecord(r, [load_rgb(p) for p in r.images], record_seed(0, r.id)) for r in JsonlSource(path).iter_records()]

    records = load_records(prompts)
    texts = []  # each prompt rendered by the template, one <image> marker, for processor(text=...)
    for r in records:
        raw, _ = tpl.encode_oneturn(tokenizer, [{"role": "user", "content": r.record.prompt}, {"role": "assistant", "content": ""}], None, None)
        texts.append(tokenizer.decode(raw, skip_special_tokens=False))
    same_ids = processor(images=records[0].images, text=texts[0], add_special_tokens=False)["input_ids"][0] == backend.renderer.prompt_ids(
        records[0].record.prompt, records[0].images
    )
    if not same_ids:
        log("warning: processor(text=rendered prompt) does not give the builder's token ids for this model")

    log("warm-up")
    with torch.inference_mode():
        model.generate(**prepared_batches(backend, augmenter, records[:4], 4)[0], **gen_kwargs)

    # 1 + 4: builder sweep and bare generate, interleaved, fastest of --repeats
    builder = {bs: Timing() for bs in sizes}
    bare = {bs: Timing() for bs in sizes}
    digests: dict[int, set] = {bs: set() for bs in sizes}
    batches = {bs: prepared_batches(backend, augmenter, records, bs) for bs in sizes}
    for rep in range(args.repeats):
        log(f"builder and bare generate at batch sizes {sizes}, round {rep + 1}/{args.repeats}")
        for bs in sizes:
            cfg = build_config(model_dir, template, prompts, os.path.join(root, f"build_bs{bs}"), "bench", bs, tokens, args.step)
            seconds, digest, _ = run_builder(cfg, loaded)
            builder[bs].runs.append(seconds)
            digests[bs].add(digest)
            bare[bs].runs.append(run_bare(model, batches[bs], gen_kwargs))
    del batches
    best_bs = min(sizes, key=lambda bs: builder[bs].best)

    # 4': overhead over enough batches that filling the prefetch pipeline (the first batch's decoding and
    # preparing, which nothing overlaps) and the build's fixed costs are amortised: the figure Z
    over = None
    if args.overhead_batches > 0:
        over_prompts = write_prompts(os.path.join(root, f"prompts{image_size}_x{overhead_n}.jsonl"), images, overhead_n)
        over_records = load_records(over_prompts)
        over_batches = prepared_batches(backend, augmenter, over_records, best_bs)
        over = {"builder": Timing(), "bare": Timing(), "digests": set(), "prompts": overhead_n}
        for rep in range(args.repeats):
            log(f"overhead: builder and bare generate over {len(over_batches)} batches of {best_bs}, round {rep + 1}/{args.repeats}")
            cfg = build_config(model_dir, template, over_prompts, os.path.join(root, "build_overhead"), "bench", best_bs, tokens, args.step)
            seconds, digest, _ = run_builder(cfg, loaded)
            over["builder"].runs.append(seconds)
            over["digests"].add(digest)
            over["bare"].runs.append(run_bare(model, over_batches, gen_kwargs))
        del over_batches, over_records

    large = None
    if args.large_image_size and args.large_image_size != image_size:
        log(f"builder on {args.large_image_size} px files, batch size {best_bs}")
        big = make_images(os.path.join(root, f"images{args.large_image_size}"), n, args.large_image_size)
        big_prompts = write_prompts(os.path.join(root, f"prompts{args.large_image_size}.jsonl"), big, n)
        large = Timing()
        for _ in range(max(1, min(3, args.repeats))):
            cfg = build_config(model_dir, template, big_prompts, os.path.join(root, "build_large"), "bench", best_bs, tokens, args.step)
            large.runs.append(run_builder(cfg, loaded)[0])

    # 7: natural answer lengths
    natural, natural_error = None, None
    if not args.skip_natural:
        from benchmarks.natural_runs import run_natural

        try:
            natural = run_natural(args, root, images)
        except Exception as exc:  # noqa: BLE001 - reported in the table; the other figures still count
            natural_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log(f"natural-length builds failed: {natural_error}")

    # 8: Ray scaling
    ray, ray_error = None, None
    if not args.skip_ray:
        if importlib.util.find_spec("ray") is None:
            log("Ray scaling skipped: ray is not installed (make install installs it)")
        else:
            from benchmarks.ray_scaling import run_ray_scaling
            from seva_plugin.pipeline.records import PromptRecord

            ray_n = args.ray_prompts
            log(f"Ray scaling: {ray_n} prompts, batch {args.ray_batch}, 1 worker (in process) against {args.ray_workers} Ray workers")
            ray_prompts = write_prompts(os.path.join(root, f"prompts{image_size}_ray{ray_n}.jsonl"), images, ray_n)

            def ray_config(workers: int, name: str) -> dict:
                cfg = build_config(model_dir, template, ray_prompts, os.path.join(root, f"build_{name}"), "bench", args.ray_batch, tokens, args.step)
                cfg["ray"] = {"num_workers": workers}
                return cfg

            warm = (PromptRecord("warm-up", "<image>" + rows[0]["question"], [os.path.abspath(rows[0]["image"])]), 0)
            try:
                ray = run_ray_scaling(ray_config, loaded, warm, args.ray_repeats, args.ray_workers)
            except Exception as exc:  # noqa: BLE001 - reported in the table (R is then nan); the other figures still count
                ray_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                log(f"Ray scaling failed: {ray_error}")

    # 2: the official-style loop
    sequential = None
    if not args.skip_sequential:
        log(f"official-style loop: {n} prompts x 2 views, one generate each")
        sequential = run_sequential(model, processor, augmenter, rows, texts, tokens, gen_kwargs["pad_token_id"], gen_kwargs["eos_token_id"])

    # 3: ChatModel
    chat_seconds = None
    if not args.skip_chatmodel:
        log(f"LLaMA-Factory ChatModel: {n} prompts x 2 views, one chat call each")
        chat_seconds, chat_tokens = run_chatmodel(model_dir, template, rows, tokens)
        if chat_tokens != 2 * n * tokens:
            log(f"warning: ChatModel produced {chat_tokens} tokens, expected {2 * n * tokens}")

    # 6: augmentation throughput
    from benchmarks.augment import augment_throughput

    log("augmentation throughput at 336 px")
    aug = augment_throughput(336, images[: args.aug_images])

    # 5: memory, each build in its own process (the tiny model: a cheap configuration)
    mem = []
    if not args.skip_memory:
        from benchmarks.memory import memory_run

        mem_images = make_images(os.path.join(root, "images_mem"), 64, 64, seed=1, fmt="png")
        for count in (int(s) for s in args.memory_records.split(",")):
            log(f"memory: a build over {count} source records in a subprocess")
            mem.append(memory_run(root, tiny, count, mem_images, args.memory_batch, args.threads))

    # 9: STIC and RLAIF-V against their official-style loops
    label_free = None
    if not args.skip_label_free:
        from benchmarks.label_free import run_label_free

        label_free = run_label_free(args, root)

    # 10: POPE-style probes
    evals, eval_error = None, None
    if not args.skip_eval:
        try:
            evals = eval_speed.run_eval_speed(args, root)
        except Exception as exc:  # noqa: BLE001 - reported in the table (E is then nan); the other figures still count
            eval_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log(f"POPE-style probes failed: {eval_error}")

    # -- report --------------------------------------------------------------------------------
    b_best = builder[best_bs].best
    rate = lambda seconds: 2 * n / seconds  # noqa: E731 - answers per second
    lines = [
        "",
        f"seva-plugin bench: {os.path.basename(model_dir)} ({template}), {n} prompts x 2 views (clean, diffusion_noise t={args.step}),",
        f"exactly {tokens} new tokens per answer, {image_size} px JPEG files, torch threads {args.threads}",
        f"machine: {machine()}; load average {load_start:.1f} at start, {load_average():.1f} at end",
        f"torch {torch.__version__}, transformers {transformers.__version__}; fastest of {args.repeats} interleaved runs for 1 and 4",
        "",
        f"{'method':<48} {'seconds':>8} {'answers/s':>10} {'tokens/s':>9} {'builder is':>11}",
    ]

    def row(name: str, seconds: float | None) -> str:
        if seconds is None:
            return f"{name:<48} {'skipped':>8}"
        return f"{name:<48} {seconds:8.2f} {rate(seconds):10.1f} {rate(seconds) * tokens:9.0f} {seconds / b_best:10.2f}x"

    lines.append(row(f"1. builder (Build.run, hf), batch {best_bs}", b_best))
    lines.append(row("2. official-style loop (processor + generate)", sequential))
    lines.append(row("3. ChatModel (hf engine), one chat per answer", chat_seconds))
    lines.append(row(f"4. bare batched generate, batch {best_bs}", bare[best_bs].best))
    if large is not None:
        lines.append(row(f"   builder on {args.large_image_size} px files, batch {best_bs}", large.best))
    lines += [
        "",
        "builder batch-size sweep (records per batch, 2 sequences each); overhead = builder / bare:",
        f"{'batch':>7} {'builder s':>10} {'bare s':>8} {'overhead':>9} {'median of paired':>17} {'answers/s':>10}",
    ]
    for bs in sizes:
        paired = median([b / g for b, g in zip(builder[bs].runs, bare[bs].runs, strict=True)])
        mark = "  <- best" if bs == best_bs else ""
        lines.append(
            f"{bs:>7} {builder[bs].best:10.2f} {bare[bs].best:8.2f} {builder[bs].best / bare[bs].best:9.3f} {paired:17.3f} {rate(builder[bs].best):10.1f}{mark}"
        )
    deterministic = all(len(d) == 1 for d in digests.values()) and (over is None or len(over["digests"]) == 1)
    lines.append(f"builder runs (s), batch {best_bs}: {fmt_runs(builder[best_bs].runs)}; bare: {fmt_runs(bare[best_bs].runs)}")
    z = b_best / bare[best_bs].best
    if over is not None:
        ob, og = over["builder"], over["bare"]
        k = over["prompts"] // best_bs
        z = ob.best / og.best
        paired = median([b / g for b, g in zip(ob.runs, og.runs, strict=True)])
        # builder = fixed + k * (generate + per-batch work), bare = k * generate: two batch counts give both parts
        short_b, short_g, short_k = b_best, bare[best_bs].best, -(-n // best_bs)
        per_batch = ((ob.best - og.best) - (short_b - short_g)) / (k - short_k) if k > short_k else float("nan")
        fixed = (short_b - short_g) - short_k * per_batch
        lines += [
            "",
            f"overhead over {k} batches of {best_bs} ({over['prompts']} prompts; the figure Z): builder {ob.best:.2f} s, bare {og.best:.2f} s, "
            f"overhead {z:.3f}, median of paired {paired:.3f}",
            f"  runs (s): builder {fmt_runs(ob.runs)}; bare {fmt_runs(og.runs)}",
            f"  what is left of the builder's own work: about {fixed * 1000:.0f} ms per build (filling the pipeline, journal, writer, manifest) "
            f"and {per_batch * 1000:.0f} ms per batch ({per_batch / (og.best / k):.1%} of a batch's generation), from the {short_k}- and {k}-batch figures",
        ]
    lines.append(f"data file byte-identical across the repeats of each batch size: {'yes' if deterministic else 'NO'}")
    if natural_error is not None:
        lines += ["", f"natural-length builds failed: {natural_error}"]
    if natural is not None:
        lines += ["", *natural.report_lines()]
    if ray_error is not None:
        lines += ["", f"Ray scaling failed: {ray_error}"]
    if ray is not None:
        lines += [
            "",
            f"Ray scaling: {args.ray_prompts} prompts, batch {args.ray_batch}, {tokens} tokens per answer; 1 worker = the build in one process, "
            f"{ray.workers} = Ray actors with 1 CPU and 1 torch thread each (fastest of {args.ray_repeats}, interleaved)",
            f"  1 worker {ray.local.best:.2f} s, {ray.workers} Ray workers {ray.ray.best:.2f} s: speedup {ray.speedup:.2f} "
            f"(median of paired {median([a / b for a, b in zip(ray.local.runs, ray.ray.runs, strict=True)]):.2f}); "
            f"data byte-identical: {'yes' if ray.identical else 'NO'}",
            f"  runs (s): 1 worker {fmt_runs(ray.local.runs)}; Ray {fmt_runs(ray.ray.runs)}; per worker (records/s after its first batch): "
            + ", ".join(f"{r:.0f}" for r in ray.worker_rates),
            f"  not timed: ray.init {ray.startup[0]:.1f} s; starting the workers and loading their models {fmt_runs(ray.startup[1:])} s per build",
        ]
    if mem:
        lines += ["", f"memory: cheap builds (tiny model, 64 px PNG files, max_new_tokens=1, batch {args.memory_batch}), one subprocess each:"]
        for m in mem:
            lines.append(
                f"  {m['records']:>6} source records: peak RSS {m['peak_rss_mb']:7.1f} MiB, build {m['seconds']:5.1f} s "
                f"({m['records'] / m['seconds']:.0f} records/s)"
            )
    lines += ["", "augmentation throughput at 336 px, one image per call, 1 thread:"]
    lines.append(f"  diffusion_noise (3x336x336 tensor): {aug['diffusion_noise']:7.0f} images/s")
    lines.append(f"  moco (336x336 PIL image):           {aug['moco']:7.0f} images/s")
    if label_free is not None:
        lines += label_free.lines()
    if evals is not None or eval_error is not None:
        lines += ["", *(evals.report_lines(args.eval_new_tokens) if evals is not None else [f"POPE-style probes failed: {eval_error}"])]
    lines += ["", f"bench time {time.perf_counter() - started:.0f} s; load average at the end {load_average():.1f}"]
    x = sequential / b_best if sequential else float("nan")
    y = chat_seconds / b_best if chat_seconds else float("nan")
    w = mem[-1]["peak_rss_mb"] / mem[0]["peak_rss_mb"] if mem else float("nan")
    r = ray.speedup if ray is not None else float("nan")
    print("\n".join(lines), flush=True)
    lf = label_free.bench_keys() if label_free is not None else "stic_speedup=nan rlaifv_speedup=nan"
    e = evals.speedup if evals is not None else float("nan")
    figures = f"speedup_vs_sequential={x:.2f} speedup_vs_chatmodel={y:.2f} overhead={z:.3f} rss_ratio={w:.3f} ray_speedup={r:.2f} {lf} eval_speedup={e:.2f}"
    print(f"BENCH {figures}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
