"""``seva``: build preference data, list plugins, check recipes, run the demo.

Only argparse is imported at start-up; each command imports what it needs.
"""

from __future__ import annotations

import argparse
import sys

from seva_plugin import __version__
from seva_plugin.errors import SevaError


def cmd_build(args) -> int:
    from seva_plugin.pipeline.build import build

    result = build(args.config, args.overrides, progress=not args.no_progress)
    print(result.summary())
    return 0


def cmd_plugins(args) -> int:
    from seva_plugin.registry import get_registry

    rows = [(c.kind, c.name, c.plugin) for c in get_registry()]
    width = [max(len(r[i]) for r in rows + [("kind", "name", "plugin")]) for i in range(3)]
    for row in [("kind", "name", "plugin"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip())
    return 0


def cmd_check_recipe(args) -> int:
    from seva_plugin.commands.check_recipe import main as check_main

    return check_main([args.recipe, *args.overrides])


def cmd_demo(args) -> int:
    from seva_plugin.commands.demo import run_demo

    run_demo(args.out, small=args.small, seed=args.seed)
    return 0


def cmd_inspect(args) -> int:
    from seva_plugin.commands.gallery import inspect_dataset

    print(inspect_dataset(args.data_dir, args.name, html=args.html, limit=args.limit))
    return 0


def cmd_iterate(args) -> int:
    from seva_plugin.commands.iterate import iterate

    iterate(args.build, args.recipe, rounds=args.rounds, work_dir=args.work_dir, overrides=args.overrides)
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
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build preference pairs from a YAML build config")
    b.add_argument("config", help="build config YAML (see data_templates/)")
    b.add_argument("overrides", nargs="*", help="key=value overrides, dotted: augment.step=800")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build)

    sub.add_parser("plugins", help="list every registered component and its plugin").set_defaults(func=cmd_plugins)

    c = sub.add_parser("check-recipe", help="validate a LLaMA-Factory training recipe without loading weights")
    c.add_argument("recipe")
    c.add_argument("overrides", nargs="*", help="key=value overrides, as llamafactory-cli takes them")
    c.set_defaults(func=cmd_check_recipe)

    d = sub.add_parser("demo", help="the whole pipeline on CPU with a tiny offline model")
    d.add_argument("--out", default="demo_out", help="working folder (default: demo_out)")
    d.add_argument("--seed", type=int, default=0, help="world, model and build seed (default 0)")
    d.add_argument("--small", action="store_true", help="a shrunken world (fewer images, about a third of the time): a smoke run")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("inspect", help="summarise a built dataset and write an HTML gallery of its pairs")
    i.add_argument("data_dir", help="the output.dataset_dir of the build")
    i.add_argument("--name", required=True, help="the dataset name (output.name)")
    i.add_argument("--html", help="write a self-contained HTML gallery to this file")
    i.add_argument("--limit", type=int, default=200, help="pairs shown in the gallery (default 200)")
    i.set_defaults(func=cmd_inspect)

    it = sub.add_parser("iterate", help="rounds of build -> train -> merge, each round generating with the last model")
    it.add_argument("build", help="build config YAML")
    it.add_argument("recipe", help="LLaMA-Factory training recipe YAML")
    it.add_argument("--rounds", type=int, default=3)
    it.add_argument("--work-dir", required=True)
    it.add_argument("overrides", nargs="*", help="key=value overrides for the build config")
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
    e.add_argument("--overwrite", action="store_true", help="replace what an earlier export of the same name wrote in --out")
    e.add_argument("--allow-modified", action="store_true", help="export data that is not what its build wrote (the new manifest records it)")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("recipes", help="list the shipped recipes and build templates, or copy some to a folder")
    r.add_argument("action", nargs="?", choices=["list", "copy"], default="list")
    r.add_argument("names", nargs="*", help="files to copy, e.g. seva_llava.yaml (recipes and data_templates are searched)")
    r.add_argument("--to", default=".", help="destination folder for copy (default: the current folder)")
    r.add_argument("--force", action="store_true", help="replace files that already exist there")
    r.set_defaults(func=cmd_recipes)
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """``key=value`` overrides are accepted anywhere on the line, options included:
    ``seva iterate B R --rounds 2 --work-dir D model=...`` works as ``docs/csr.md`` shows."""
    p = parser()
    args, extra = p.parse_known_args(argv)
    strays = [a for a in extra if a.startswith("-") or "=" not in a]
    if strays or (extra and not hasattr(args, "overrides")):
        p.error(f"unrecognized arguments: {' '.join(strays or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    from seva_plugin.commands import interrupt

    args = parse_args(argv)
    signalled: list[int] = []
    try:
        with interrupt.handled() as signalled:  # one Ctrl-C or SIGTERM ends the command within seconds, whatever it waits in
            return args.func(args)
    except SevaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if signalled:
            interrupt.force_exit()  # ends what the command's own clean-up left running
        print(f"\n{interrupt.MESSAGE}", file=sys.stderr)
        return interrupt.EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
