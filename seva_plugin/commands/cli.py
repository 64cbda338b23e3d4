"""``seva``: build preference data, evaluate models, list plugins, check recipes, run the demo.

Only argparse is imported at start-up; each command imports what it needs.
"""

from __future__ import annotations

import argparse
import sys

from seva_plugin import __version__
from seva_plugin.errors import SevaError

VERBOSE_HELP = "vLLM's, transformers' and LLaMA-Factory's INFO logs, and Ray workers' output (default: their warnings only)"


def cmd_build(args) -> int:
    from seva_plugin.pipeline.build import build

    result = build(args.config, args.overrides, progress=not args.no_progress)
    print(result.summary())
    return 0


def cmd_eval(args) -> int:
    from seva_plugin.commands.eval import evaluate

    evaluate(args.config, args.overrides, progress=not args.no_progress)
    return 0


def cmd_plugins(args) -> int:
    from seva_plugin.registry import Registry, get_plugin_manager

    registry = Registry(get_plugin_manager())  # problems are shown in the listing, not as warnings
    print_table([("kind", "name", "plugin", ""), *((c.kind, c.name, c.plugin, registry.note(c)) for c in registry)])
    print()
    states = [(p.name, p.package or "-", p.state + (f": {p.problem}" if p.problem else "")) for p in registry.plugins]
    print_table([("plugin", "package", "state"), *states])
    return 0


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, the last one as it is."""
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], width[:-1], strict=True)), row[-1]]).rstrip())


def cmd_check_recipe(args) -> int:
    from seva_plugin.commands.check_recipe import main as check_main

    return check_main([args.recipe, *args.overrides])


def cmd_doctor(args) -> int:
    from seva_plugin.commands.check_recipe.environment import doctor_lines

    print("\n".join(doctor_lines()))
    return 0


def cmd_demo(args) -> int:
    from seva_plugin.commands.demo import run_demo

    run_demo(args.out, small=args.small, seed=args.seed, strategy=args.strategy)
    return 0


def cmd_inspect(args) -> int:
    from seva_plugin.commands.gallery import inspect_dataset

    print(inspect_dataset(args.data_dir, args.name, html=args.html, sample=None if args.all else args.sample, seed=args.seed, score=args.score))
    return 0


def cmd_iterate(args) -> int:
    from seva_plugin.commands.iterate import iterate

    iterate(args.build, args.recipe, rounds=args.rounds, work_dir=args.work_dir, overrides=args.overrides, eval_yaml=args.eval)
    return 0


def cmd_export(args) -> int:
    from seva_plugin.commands.export import export

    result = export(
        args.data_dir,
        args.name,
        args.to,
        args.out,
        out_name=args.out_name,
        overwrite=args.overwrite,
        allow_modified=args.allow_modified,
        shard_size=args.shard_size,
        licence=args.license,
        exclude=args.exclude,
    )
    print(result.summary())
    return 0


def cmd_recipes(args) -> int:
    from seva_plugin.commands.recipes import copy, listing

    if args.action == "copy":
        for path in copy(args.names, args.to, force=args.force):
            print(path)
        return 0
    print(listing())
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seva", description="Self-supervised visual preference data (SeVa, CSR) for LLaMA-Factory.")
    p.add_argument("--version", action="version", version=f"seva-plugin {__version__}")
    p.add_argument(
        "--disable-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="turn a plugin off by its name in `seva plugins` (repeatable; adds to SEVA_DISABLE_PLUGINS)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build preference pairs from a YAML build config")
    b.add_argument("config", help="build config YAML (see data_templates/)")
    b.add_argument("overrides", nargs="*", help="key=value overrides, dotted: augment.step=800; ~key removes a key: ~source.preset")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    b.set_defaults(func=cmd_build)

    ev = sub.add_parser("eval", help="POPE-style yes/no object probes through a backend: F1, yes-ratio, before and after (docs/eval.md)")
    ev.add_argument("config", help="eval config YAML (see data_templates/eval_pope.yaml)")
    ev.add_argument("overrides", nargs="*", help="key=value overrides, dotted: backend.batch_size=16")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)

    sub.add_parser("plugins", help="list every registered component, and every plugin with its package and state").set_defaults(func=cmd_plugins)

    c = sub.add_parser("check-recipe", help="validate a LLaMA-Factory training recipe without loading weights")
    c.add_argument("recipe")
    c.add_argument("overrides", nargs="*", help="key=value overrides, as llamafactory-cli takes them")
    c.set_defaults(func=cmd_check_recipe)

    sub.add_parser("doctor", help="the installed packages against the tested set and the known-bad combinations").set_defaults(func=cmd_doctor)

    d = sub.add_parser("demo", help="the whole pipeline on CPU with a tiny offline model")
    d.add_argument("--out", default="demo_out", help="working folder (default: demo_out)")
    d.add_argument("--seed", type=int, default=0, help="world, model and build seed (default 0)")
    d.add_argument("--small", action="store_true", help="a shrunken world (fewer images, about a third of the time): a smoke run")
    d.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    d.add_argument("--strategy", choices=("seva", "stic", "rlaifv"), default="seva", help="how the pairs are made (default seva; docs/label-free.md)")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("inspect", help="summarise a built dataset and write an HTML gallery to curate its pairs")
    i.add_argument("data_dir", help="the output.dataset_dir of the build")
    i.add_argument("--name", required=True, help="the dataset name (output.name)")
    i.add_argument("--html", help="write a self-contained HTML gallery to this file (sort, filter, mark pairs for seva export --exclude)")
    shown = i.add_mutually_exclusive_group()
    shown.add_argument("--sample", type=int, default=200, help="a seeded random sample of this many pairs, kept and dropped (default 200)")
    shown.add_argument("--all", action="store_true", help="every pair, a page at a time")
    i.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    i.add_argument("--score", action="store_true", help="add each pair's log-prob margin (chosen - rejected) under the build's model and backend")
    i.set_defaults(func=cmd_inspect)

    it = sub.add_parser("iterate", help="rounds of build -> train -> merge, each round generating with the last model")
    it.add_argument("build", help="build config YAML")
    it.add_argument("recipe", help="LLaMA-Factory training recipe YAML")
    it.add_argument("--rounds", type=int, default=3)
    it.add_argument("--work-dir", required=True)
    it.add_argument("--eval", metavar="EVAL.yaml", help="ask round 0's model and each round's trained model these probes (seva eval); table and plot by round")
    it.add_argument("overrides", nargs="*", help="key=value overrides for the build config")
    it.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    it.set_defaults(func=cmd_iterate)

    e = sub.add_parser("export", help="convert a finished build to TRL's format, Parquet with embedded images, or JSONL, without regenerating")
    e.add_argument("data_dir", help="the output.dataset_dir of the build")
    e.add_argument("--name", required=True, help="the dataset name (output.name)")
    e.add_argument(
        "--to",
        required=True,
        choices=["trl", "parquet", "jsonl"],
        help="trl: TRL's vision preference format; parquet: LLaMA-Factory with embedded images; jsonl: LLaMA-Factory with image paths",
    )
    e.add_argument("--out", required=True, help="folder to write into (its dataset_info.json gets the entry, for parquet and jsonl)")
    e.add_argument("--out-name", help="dataset name in --out (default: --name)")
    e.add_argument("--shard-size", type=int, help="parquet, trl: pairs per shard file (default 1000)")
    e.add_argument("--license", help="parquet, trl: the dataset card's licence, a Hub licence id (default: the build's output.license, else unknown)")
    e.add_argument("--exclude", metavar="FILE", help="leave out the pairs whose ids FILE lists (seva inspect's download, a JSON list, or one id a line)")
    e.add_argument("--overwrite", action="store_true", help="replace what an earlier export of the same name wrote in --out")
    e.add_argument("--allow-modified", action="store_true", help="export data that is not what its build wrote (the new manifest records it)")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("recipes", help="list the shipped recipes and build templates, or copy some to a folder")
    r.add_argument("action", nargs="?", choices=["list", "copy"], default="list")
    r.add_argument(
        "names",
        nargs="*",
        help="files to copy as KIND/NAME, e.g. recipes/seva_llava.yaml data_templates/seva_llava_t500.yaml "
        "(a bare NAME if only one kind has it; a KIND alone copies all)",
    )
    r.add_argument("--to", default=".", help="destination folder for copy: files land in TO/recipes/ and TO/data_templates/ (default: the current folder)")
    r.add_argument("--force", action="store_true", help="replace files that already exist there")
    r.set_defaults(func=cmd_recipes)
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """``key=value`` (and ``~key``) overrides are accepted anywhere on the line, options included:
    ``seva iterate B R --rounds 2 --work-dir D model=...`` works as ``docs/csr.md`` shows."""
    p = parser()
    args, extra = p.parse_known_args(argv)
    strays = [a for a in extra if a.startswith("-") or ("=" not in a and not a.startswith("~"))]
    if strays or (extra and not hasattr(args, "overrides")):
        p.error(f"unrecognized arguments: {' '.join(strays or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    from seva_plugin.commands import interrupt

    args = parse_args(argv)
    from seva_plugin.logs import quiet_libraries

    quiet_libraries(verbose=getattr(args, "verbose", False))  # before vLLM, transformers or LLaMA-Factory is imported
    signalled: list[int] = []
    try:
        with interrupt.handled() as signalled:  # one Ctrl-C or SIGTERM ends the command within seconds, whatever it waits in
            if args.disable_plugin:
                from seva_plugin.registry import disable_plugins

                disable_plugins(args.disable_plugin)
            return args.func(args)
    except SevaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if signalled:
            interrupt.force_exit(signalled)  # ends what the command's own clean-up left running
        print(f"\n{interrupt.MESSAGE}", file=sys.stderr)
        return interrupt.exit_code(signalled)


if __name__ == "__main__":
    sys.exit(main())
