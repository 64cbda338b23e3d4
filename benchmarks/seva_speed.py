"""Workload ``seva``: the SeVa builder against the loops users would otherwise run.

One loaded model (the tiny offline LLaVA, or ``--model``), the same prompts (clean and augmented view
of each) and the same fixed number of new tokens (``min_new_tokens = max_new_tokens = N``, so no
method can win by stopping early) for:

1. the builder: ``Build(config).run()`` with backend ``hf`` (journal, writer and all) on real JPEG
   files, at each batch size of a small sweep; the best one is reported;
2. the official-style loop: one prompt at a time, ``processor(images=..., text=...)`` then
   ``model.generate``, the augmented view noising the processed pixel tensor;
3. LLaMA-Factory's ``ChatModel`` (huggingface engine), one ``chat`` call per prompt and view;
4. bare batched ``model.generate`` on batches processed beforehand (the floor for the builder),
   also over enough batches that filling the prefetch pipeline is amortised (the overhead figure).

Figures: ``speedup_vs_sequential`` (1 over 2), ``speedup_vs_chatmodel`` (1 over 3), ``overhead``
(1 over 4 at the best batch size, over ``--overhead-batches`` batches).
"""

from __future__ import annotations

import json
import os

from benchmarks.common import Section, Timing, build_config, log, median, write_prompts
from benchmarks.methods import prepared_batches, run_bare, run_builder, run_chatmodel, run_sequential

NAME = "seva"
KEYS = ("speedup_vs_sequential", "speedup_vs_chatmodel", "overhead")


def add_arguments(p) -> None:
    g = p.add_argument_group("seva")
    g.add_argument("--prompts", type=int, default=256, help="prompts; each is answered on the clean and the augmented view (default: 256)")
    g.add_argument(
        "--batch-sizes",
        default="32,64,128",
        help="builder batch sizes to sweep, records per batch; sizes above half the prompts are left out (default: 32,64,128)",
    )
    g.add_argument("--repeats", type=int, default=5, help="runs of each builder / bare measurement, interleaved; the fastest counts (default: 5)")
    g.add_argument("--overhead-batches", type=int, default=8, help="batches (at the best batch size) of the overhead figure Z (default: 8)")
    g.add_argument("--large-image-size", type=int, default=336, help="a second builder run on files this large, reported beside (0: skip; default: 336)")
    g.add_argument("--skip-sequential", action="store_true", help="leave out the official-style loop (X is then nan)")
    g.add_argument("--skip-chatmodel", action="store_true", help="leave out the ChatModel loop (Y is then nan)")


def fmt_runs(runs: list[float]) -> str:
    return " ".join(f"{s:.2f}" for s in runs)


def run(ctx) -> Section:
    import torch

    args, root = ctx.args, ctx.root
    n, tokens = args.prompts, args.new_tokens
    sizes = sorted({int(s) for s in args.batch_sizes.split(",") if 0 < int(s) <= max(1, n // 2)}) or [max(1, n // 2)]
    model_dir, template = ctx.model_dir, args.template

    # one loaded model shared by the builder, the official-style loop and bare generate
    log(f"loading {model_dir}")
    loaded = backend = ctx.loaded
    model, renderer = loaded.hf_model, loaded.renderer
    tokenizer, processor, tpl = renderer.tokenizer, renderer.processor, renderer.template
    augmenter = _augmenter(args.step)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen_kwargs = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, eos_token_id=tpl.get_stop_token_ids(tokenizer), pad_token_id=pad)
    image_size = ctx.image_size

    overhead_n = max(sizes) * max(1, args.overhead_batches)
    log(f"writing {max(n, overhead_n)} prompts, one {image_size} px JPEG file each")
    images = ctx.images(max(n, overhead_n))
    prompts = write_prompts(os.path.join(root, f"prompts{image_size}.jsonl"), images, n)
    rows = [json.loads(line) for line in open(prompts, encoding="utf-8")]
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

    def cfg_for(prompt_file: str, out: str, bs: int) -> dict:
        return build_config(model_dir, template, prompt_file, os.path.join(root, out), "bench", bs, tokens, args.step)

    # 1 + 4: builder sweep and bare generate, interleaved, fastest of --repeats
    builder = {bs: Timing() for bs in sizes}
    bare = {bs: Timing() for bs in sizes}
    digests: dict[int, set] = {bs: set() for bs in sizes}
    batches = {bs: prepared_batches(backend, augmenter, records, bs) for bs in sizes}
    for rep in range(args.repeats):
        log(f"builder and bare generate at batch sizes {sizes}, round {rep + 1}/{args.repeats}")
        for bs in sizes:
            seconds, digest, _ = run_builder(cfg_for(prompts, f"build_bs{bs}", bs), loaded)
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
            seconds, digest, _ = run_builder(cfg_for(over_prompts, "build_overhead", best_bs), loaded)
            over["builder"].runs.append(seconds)
            over["digests"].add(digest)
            over["bare"].runs.append(run_bare(model, over_batches, gen_kwargs))
        del over_batches, over_records

    large = None
    if args.large_image_size and args.large_image_size != image_size:
        log(f"builder on {args.large_image_size} px files, batch size {best_bs}")
        big = ctx.images(n, args.large_image_size)
        big_prompts = write_prompts(os.path.join(root, f"prompts{args.large_image_size}.jsonl"), big, n)
        large = Timing()
        for _ in range(max(1, min(3, args.repeats))):
            large.runs.append(run_builder(cfg_for(big_prompts, "build_large", best_bs), loaded)[0])

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

    # -- report --------------------------------------------------------------------------------
    b_best = builder[best_bs].best
    rate = lambda seconds: 2 * n / seconds  # noqa: E731 - answers per second
    lines = [
        f"SeVa: {os.path.basename(model_dir)} ({template}), {n} prompts x 2 views (clean, diffusion_noise t={args.step}),",
        f"exactly {tokens} new tokens per answer, {image_size} px JPEG files; fastest of {args.repeats} interleaved runs for 1 and 4",
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
    figures = {
        "speedup_vs_sequential": sequential / b_best if sequential else float("nan"),
        "speedup_vs_chatmodel": chat_seconds / b_best if chat_seconds else float("nan"),
        "overhead": z,
    }
    return Section(lines, figures)


def _augmenter(step: int):
    from seva_plugin.plugins.augmenters.diffusion_noise import DiffusionNoise

    return DiffusionNoise(step=step)


def load_records(path: str) -> list:
    from seva_plugin.pipeline.images import load_rgb
    from seva_plugin.pipeline.records import LoadedRecord
    from seva_plugin.pipeline.views import record_seed
    from seva_plugin.plugins.sources.jsonl import JsonlSource

    return [LoadedRecord(r, [load_rgb(p) for p in r.images], record_seed(0, r.id)) for r in JsonlSource(path).iter_records()]
