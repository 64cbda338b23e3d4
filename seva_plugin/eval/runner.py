"""One ``seva eval`` run: probes -> batches of images -> the backend (here or on Ray workers) -> journal
-> ``report.json``, ``predictions.jsonl``, ``rejects.jsonl``.

The build's machinery, not a second pipeline: ``intake.batches`` decodes images (a broken one is a
reject with its reason), ``prefetch`` decodes and prepares the next batch while the backend answers,
``workers.make_workers`` runs the batches in this process or on Ray, and the ``Journal`` commits each
finished batch, so a killed run resumes where it stopped. Everything is checked before any model loads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from seva_plugin.errors import ConfigError
from seva_plugin.eval.answers import ProbeSpec, ProbeWork
from seva_plugin.eval.config import EvalConfig
from seva_plugin.eval.probes import ProbeSet, load_probes
from seva_plugin.eval.report import predictions, report_json, table, write_outputs
from seva_plugin.pipeline import intake
from seva_plugin.pipeline.config import split_spec
from seva_plugin.pipeline.files import check_writable, output_lock
from seva_plugin.pipeline.journal import Journal
from seva_plugin.pipeline.records import LoadedRecord, Reject


@dataclass
class EvalResult:
    report: dict[str, Any]
    out_dir: str
    seconds: float
    probes_per_second: float | None

    @property
    def table(self) -> str:
        return table(self.report)


class Evaluation:
    def __init__(self, config: EvalConfig):
        from seva_plugin.families import check_model_template
        from seva_plugin.pipeline.build import check_template
        from seva_plugin.pipeline.model_paths import check_model_path, hub_checks
        from seva_plugin.registry import get_registry

        self.config = cfg = config
        self.out_dir = os.path.abspath(cfg.output["dir"])
        with hub_checks() as unreachable:
            check_model_path(cfg.model, "model")
            if cfg.adapter is not None and not os.path.isdir(cfg.adapter):
                raise ConfigError(f"adapter {cfg.adapter} is not a folder (a LoRA adapter, as llamafactory-cli train writes it).")
            check_template(cfg.template)
            check_model_template(cfg.model, cfg.template)
            name, params = split_spec(cfg.backend, "backend", default="hf")
            entry = get_registry().get("backend", name)
            context: dict[str, Any] = {"model": cfg.model, "template": cfg.template}
            if cfg.adapter is not None:
                if "adapter" not in entry.params():
                    raise ConfigError(f"backend '{name}' takes no adapter; use hf or vllm, or merge the adapter (llamafactory-cli export).")
                context["adapter"] = os.path.abspath(cfg.adapter)
            self.spec = ProbeSpec((entry, params, "backend", context), cfg.scoring, cfg.max_new_tokens)
            self.work: ProbeWork = self.spec.build()  # keys checked; no model loads here
            self.probes: ProbeSet = load_probes(cfg.probes, cfg.seed)
            check_writable(self.out_dir)
        self.offline = bool(unreachable)

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def run(self, progress: bool = True) -> EvalResult:
        """Answer what the journal does not have yet, then write the outputs; one run per output folder at a time."""
        from seva_plugin.pipeline.model_paths import hub_offline

        with output_lock(self.path(".lock"), f"the eval in {self.out_dir}"), hub_offline(self.offline):
            return self._run(progress)

    def _run(self, progress: bool) -> EvalResult:
        from tqdm.auto import tqdm

        from seva_plugin.pipeline.prefetch import prefetch
        from seva_plugin.pipeline.workers import make_workers

        cfg, started = self.config, time.time()
        journal = Journal(self.path("journal.jsonl"), cfg.fingerprint(), "restart" if cfg.output["overwrite"] else "error", config=cfg.to_dict())
        records = list(self.probes.records())
        done = sum(1 for r in records if journal.done[r.id])
        workers = make_workers(self.spec, self.work, cfg.ray)  # type: ignore[arg-type]  # the build's workers run any spec with build() and process()
        asked, answered = 0, set[str]()
        with tqdm(total=len(records), initial=done, desc="seva eval", unit=" images", disable=not progress) as bar:
            try:
                workers.start()
                for rejects, entries in workers.map(prefetch(self._batches(iter(records), journal, prepare=workers.local))):
                    entries = [{"kind": "reject", "id": r.id, "reason": r.reason, "code": r.code} for r in rejects] + entries
                    journal.append(entries)
                    asked += sum(len(e.get("answers", ())) for e in entries)
                    answered.update(e["id"] for e in entries if e["kind"] == "answers")
                    bar.update(len(entries))
            finally:
                workers.close()
                self.work.close()
        seconds = time.time() - started
        covered = sum(1 for p in self.probes.probes if p.image in answered)  # the probes this run's answers serve
        return self._finish(journal, seconds, asked, covered, workers.describe())

    def _batches(self, records: Iterator[Any], journal: Journal, prepare: bool) -> Generator[tuple[list[LoadedRecord], list[Reject]], None, None]:
        for batch, rejects in intake.batches(records, self.config.seed, self.work.backend.batch_size, journal.done):
            if prepare and batch and self.config.scoring == "generate":
                try:
                    self.work.backend.prepare(self.work.requests(batch))
                except Exception:  # noqa: BLE001, S110 - preparing ahead is optional: generate() redoes it and reports
                    pass
            yield batch, rejects

    def _finish(self, journal: Journal, seconds: float, asked: int, covered: int, workers: dict[str, Any]) -> EvalResult:
        answers: dict[tuple[str, str], dict[str, Any]] = {}
        image_rejects: dict[str, dict[str, Any]] = {}
        for e in journal.entries():
            if e["kind"] == "answers":
                answers.update({(e["id"], a["q"]): a for a in e["answers"]})
            elif e["kind"] == "reject":
                image_rejects[e["id"]] = e
        rows, rejected = predictions(self.probes, answers, image_rejects)
        report = report_json(self.config, self.probes, rows, rejected, self.work.backend.describe())
        rate = covered / seconds if covered and seconds > 0 else None
        run = {
            "seconds": round(seconds, 2),
            "questions_asked": asked,  # distinct (image, question) pairs answered by this run
            "probes_answered": covered,  # the probes those answers serve (a question shared by settings serves each)
            "probes_per_second": round(rate, 2) if rate else None,
            "workers": workers,
        }
        write_outputs(self.out_dir, report, rows, rejected, run)
        return EvalResult(report, self.out_dir, seconds, rate)
