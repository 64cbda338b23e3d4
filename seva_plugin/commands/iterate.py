"""``seva iterate``: rounds of build -> train -> merge, each round starting from the last round's model.

Round ``k`` (0-based):

1. **build**: the build config with ``model`` = the current model (round 0: the config's own model),
   ``output.name`` = ``<name>_r<k>`` and ``output.dataset_dir`` = ``<work>/data`` (one
   ``dataset_info.json`` for every round, so rounds can also be mixed later);
2. **train**: ``llamafactory-cli train RECIPE model_name_or_path=<current> template=<build template>
   dataset_dir=<work>/data dataset=<name>_r<k> output_dir=<work>/r<k>/adapter`` as a real subprocess.
   With LoRA and no ``ref_model`` the DPO reference is the current model under ``disable_adapter()``,
   i.e. the previous round's merged model, as CSR's iterations require; a recipe that names a
   ``ref_model`` gets ``ref_model=<current>`` too;
3. **merge**: ``llamafactory-cli export`` of the adapter into ``<work>/r<k>/merged`` (full and
   freeze fine-tuning need no merge: the trained model is ``output_dir`` itself).

``<work>/iterate_state.json`` (written atomically after every step) records each round's models,
dataset and step; a killed run, rerun with the same command, resumes at the round and step where it
stopped: a build resumes through its own journal, a training run restarts (or resumes from its
last checkpoint when the recipe saves checkpoints), an export is redone.

Overrides: ``key=value`` edit the build config; ``train.key=value`` go to ``llamafactory-cli train``;
``export.key=value`` go to the export config. ``--eval EVAL.yaml``: the probes of ``seva eval`` after every round.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import yaml

from seva_plugin.commands.host import llamafactory_cli
from seva_plugin.commands.iterate_inputs import read_recipe, split_overrides
from seva_plugin.errors import ConfigError, SevaError
from seva_plugin.pipeline.config import apply_overrides, load_config
from seva_plugin.pipeline.config import fingerprint as build_fingerprint
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.files import atomic_write_json

STATE_FILE = "iterate_state.json"
STEPS = ("build", "train", "merge")
ADAPTER_TYPES = ("lora", "oft")  # adapters LLaMA-Factory's export merges


class IterateError(SevaError):
    """A training or export subprocess failed; finished rounds and steps are kept."""


class Iteration:
    """One ``seva iterate`` run in ``work_dir``; ``run()`` does what is left to do."""

    evals: Any = None  # with --eval: seva_plugin.eval.rounds.RoundEvals, asked before round 0 and after each round

    def __init__(self, build: str, recipe: str, rounds: int, work_dir: str, overrides: list[str] | None = None, log: Callable[[str], None] = print):
        if rounds < 1:
            raise ConfigError(f"--rounds must be at least 1, got {rounds}.")
        self.build_path = os.path.abspath(build)
        self.recipe_path = os.path.abspath(recipe)
        self.rounds = rounds
        self.work_dir = os.path.abspath(work_dir)
        self.log = log
        self.build_overrides, self.train_overrides, self.export_overrides = split_overrides(overrides)
        self.config = load_config(self.build_path, self.build_overrides)  # validated before anything runs
        if isinstance(self.config.backend, dict) and self.config.backend.get("adapter"):
            raise ConfigError(
                "backend.adapter cannot be used with seva iterate: the rounds train and merge on `model` itself. "
                "Merge the adapter first (llamafactory-cli export) and set `model` to the merged folder."
            )
        self.recipe = read_recipe(self.recipe_path, self.train_overrides)
        self.finetuning_type = self.recipe.get("finetuning_type", "lora")
        self.cli = llamafactory_cli()
        self.data_dir = os.path.join(self.work_dir, "data")
        self.state_path = os.path.join(self.work_dir, STATE_FILE)
        self._check_recipe()  # before round 0, not after hours of generation
        os.makedirs(self.work_dir, exist_ok=True)
        self.state = self._load_state()

    def _check_recipe(self) -> None:
        """``seva check-recipe`` on the recipe as round 0 will train it (the keys each round sets,
        its dataset as the build will register it): errors stop here, warnings are logged."""
        from seva_plugin.commands.check_recipe import check_recipe
        from seva_plugin.plugins.writers.llamafactory import dataset_entry

        name = f"{self.config.output['name']}_r0"
        model = os.path.abspath(self.config.model) if os.path.isdir(self.config.model) else self.config.model
        args = [f"model_name_or_path={model}", f"template={self.config.template}", f"dataset_dir={self.data_dir}", f"dataset={name}"]
        # the output_dir of the next training to run: a finished round's checkpoints are never used again
        args.append(f"output_dir={os.path.join(self.work_dir, f'r{self._next_training()}', 'adapter')}")
        report = check_recipe(self.recipe_path, [*self.train_overrides, *args], planned={name: dataset_entry(f"{name}.jsonl")})
        for warning in report.warnings:
            self.log(f"[seva iterate] recipe check: warning: {warning}")
        if report.errors:
            problems = "\n".join(f"  error: {e}" for e in report.errors)
            raise ConfigError(f"the recipe check of {self.recipe_path} found problems before round 0 (nothing was built or trained):\n{problems}")

    def _next_training(self) -> int:
        """The round whose training runs next: the first one a previous run did not train (read
        before the state is checked: ``_load_state`` refuses a state of another config)."""
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                rounds = json.load(fh).get("rounds") or []
            return next((k for k, info in enumerate(rounds) if "train" not in (info.get("steps_done") or [])), len(rounds))
        except (OSError, ValueError, AttributeError, TypeError):
            return 0

    # -- state -----------------------------------------------------------------------------
    def _load_state(self) -> dict:
        fingerprint = build_fingerprint(self.config.to_dict())  # what makes two runs the same iteration
        if os.path.exists(self.state_path):
            with open(self.state_path, encoding="utf-8") as fh:
                state = json.load(fh)
            if state.get("fingerprint") != fingerprint:
                raise ConfigError(
                    f"{self.state_path} records an iteration of a different build config "
                    f"({state.get('build')} with {state.get('build_overrides')}). Rerun that command to resume it, or use another --work-dir."
                )
            state["rounds_requested"] = self.rounds
            state["recipe"], state["train_overrides"], state["export_overrides"] = self.recipe_path, self.train_overrides, self.export_overrides
            return state
        return {
            "build": self.build_path,
            "build_overrides": self.build_overrides,
            "recipe": self.recipe_path,
            "train_overrides": self.train_overrides,
            "export_overrides": self.export_overrides,
            "fingerprint": fingerprint,
            "base_model": os.path.abspath(self.config.model) if os.path.isdir(self.config.model) else self.config.model,
            "finetuning_type": self.finetuning_type,
            "rounds_requested": self.rounds,
            "rounds": [],
        }

    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state)

    def _round(self, k: int) -> dict:
        while len(self.state["rounds"]) <= k:
            n = len(self.state["rounds"])
            previous = self.state["rounds"][n - 1]["output_model"] if n else self.state["base_model"]
            folder = os.path.join(self.work_dir, f"r{n}")
            adapter = os.path.join(folder, "adapter")
            self.state["rounds"].append(
                {
                    "round": n,
                    "model": previous,  # generates the round's data and is the DPO reference
                    "dataset": f"{self.config.output['name']}_r{n}",
                    "dataset_dir": self.data_dir,
                    "manifest": DatasetFiles(self.data_dir, f"{self.config.output['name']}_r{n}").manifest,
                    "adapter": adapter,
                    "output_model": os.path.join(folder, "merged") if self.finetuning_type in ADAPTER_TYPES else adapter,
                    "steps_done": [],
                    "seconds": {},
                }
            )
        return self.state["rounds"][k]

    # -- running ---------------------------------------------------------------------------
    def run(self, progress: bool = True) -> dict:
        self._evaluate(0, self.state["base_model"], progress)
        for k in range(self.rounds):
            info = self._round(k)
            for step in STEPS:
                if step in info["steps_done"]:
                    continue
                if step == "merge" and self.finetuning_type not in ADAPTER_TYPES:
                    info["steps_done"].append(step)
                    continue
                self.log(f"[seva iterate] round {k + 1}/{self.rounds} {step}: {self._describe(step, info)}")
                started = time.time()
                self.state["current"] = {"round": k, "step": step}
                self._save()
                getattr(self, f"_{step}")(info, progress)
                info["seconds"][step] = round(time.time() - started, 2)
                info["steps_done"].append(step)
                self.state["current"] = None
                self._save()
            self.log(f"[seva iterate] round {k + 1}/{self.rounds} done: {info['output_model']}")
            self._evaluate(k + 1, info["output_model"], progress)
        self.state["final_model"] = self.state["rounds"][self.rounds - 1]["output_model"]
        self._save()
        return self.state

    def _evaluate(self, index: int, model: str, progress: bool) -> None:
        if self.evals and self.evals.evaluate(index, model, self.state, progress):  # not again once on record
            self._save()
            _free_memory()

    def _describe(self, step: str, info: dict) -> str:
        if step == "build":
            return f"generating '{info['dataset']}' with {info['model']}"
        if step == "train":
            return f"llamafactory-cli train {os.path.basename(self.recipe_path)} on '{info['dataset']}' from {info['model']}"
        return f"llamafactory-cli export -> {info['output_model']}"

    def _build(self, info: dict, progress: bool) -> None:
        from seva_plugin.pipeline.build import build

        data = self.config.to_dict()
        data["model"] = info["model"]
        data["output"] = {**data["output"], "name": info["dataset"], "dataset_dir": self.data_dir}
        result = build(data, progress=progress)
        info["build"] = {"kept": result.kept, "dropped": result.dropped, "rejected": result.rejected, "data_file": result.data_file}
        _free_memory()
        if result.kept == 0:
            raise IterateError(f"round {info['round']}: the build kept no pairs ({result.dropped}); nothing to train on. See {result.manifest_file}.")

    def _train(self, info: dict, progress: bool) -> None:
        adapter = info["adapter"]
        if os.path.isdir(adapter) and not any(n.startswith("checkpoint-") for n in os.listdir(adapter)):
            shutil.rmtree(adapter)  # an unfinished run without checkpoints: start the step over
        args = [
            f"model_name_or_path={info['model']}",
            f"template={self.config.template}",
            f"dataset_dir={self.data_dir}",
            f"dataset={info['dataset']}",
            f"output_dir={adapter}",
        ]
        if self.recipe.get("ref_model"):
            args.append(f"ref_model={info['model']}")
        self._run([self.cli, "train", self.recipe_path, *self.train_overrides, *args], os.path.join(os.path.dirname(adapter), "train.log"))
        if self.finetuning_type in ADAPTER_TYPES and not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
            raise IterateError(f"round {info['round']}: training finished but {adapter} holds no adapter_config.json.")

    def _merge(self, info: dict, progress: bool) -> None:
        folder = os.path.dirname(info["adapter"])
        merged, partial = info["output_model"], info["output_model"] + ".partial"
        for path in (partial, merged):
            if os.path.isdir(path):
                shutil.rmtree(path)
        export = {
            "model_name_or_path": info["model"],
            "adapter_name_or_path": info["adapter"],
            "template": self.config.template,
            "finetuning_type": self.finetuning_type,
            "trust_remote_code": bool(self.recipe.get("trust_remote_code", False)),
            "export_dir": partial,
            "export_size": 5,
            "export_device": "cpu",
            "export_legacy_format": False,
        }
        apply_overrides(export, self.export_overrides)
        export_yaml = os.path.join(folder, "export.yaml")
        with open(export_yaml, "w", encoding="utf-8") as fh:
            yaml.safe_dump(export, fh, sort_keys=False)
        self._run([self.cli, "export", export_yaml], os.path.join(folder, "export.log"))
        if not os.path.isfile(os.path.join(partial, "config.json")):
            raise IterateError(f"round {info['round']}: export finished but {partial} holds no config.json.")
        os.replace(partial, merged)

    def _run(self, cmd: list[str], log_path: str) -> None:
        """Run a LLaMA-Factory command, its output in ``log_path``; fail with the log's tail."""
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "w", encoding="utf-8") as fh:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
        if code != 0:
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                tail = "".join(fh.readlines()[-25:])
            raise IterateError(f"{os.path.basename(cmd[0])} {cmd[1]} failed (exit {code}); full log: {log_path}\n{tail}")


def _free_memory() -> None:
    """Release the build's model before the training subprocess needs the accelerator."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def iterate(
    build: str, recipe: str, rounds: int = 3, work_dir: str = "iterate", overrides: list[str] | None = None, progress: bool = True, eval_yaml: str | None = None
) -> dict:
    """Run (or resume) ``rounds`` rounds; return the state (also in ``<work_dir>/iterate_state.json``).
    ``eval_yaml``: an EVAL.yaml whose probes ask round 0's model and each round's (``seva_plugin.eval.rounds``)."""
    iteration = Iteration(build, recipe, rounds, work_dir, overrides)
    if eval_yaml:  # checked before round 0
        from seva_plugin.eval.rounds import RoundEvals

        iteration.evals = RoundEvals(eval_yaml, iteration.work_dir, iteration.config.template, iteration.log)
    return iteration.run(progress=progress)
