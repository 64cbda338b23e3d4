"""A build: source -> (image loading) -> strategy with augmenter and backend -> filters -> journal -> writer.

Everything that can be checked is checked in ``Build.__init__``, before any model loads.
Images are decoded (and, for the requests the strategy plans ahead, prompts encoded and images
processed by the backend) in a background thread while the model generates the previous batch.
The parts: ``intake`` (records to batches), ``batch`` (a batch to journal entries, here or on a
Ray worker), ``journal`` (resume), ``manifest`` (the record of a finished build).
"""

from __future__ import annotations

import json
import time
from collections import Counter

from seva_plugin.errors import ConfigError, NothingKept, unknown
from seva_plugin.families import check_model_template
from seva_plugin.pipeline import intake
from seva_plugin.pipeline.batch import WorkSpec
from seva_plugin.pipeline.config import OUTPUT_KEYS, BuildConfig, fingerprint, fingerprinted, load_config, source_spec
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.files import atomic_write_json, atomic_write_lines, check_writable, output_lock
from seva_plugin.pipeline.journal import Journal
from seva_plugin.pipeline.manifest import BuildResult, checked_write, manifest, nothing_kept, package_version, progress_text
from seva_plugin.pipeline.model_paths import check_model_path, hub_checks, hub_offline
from seva_plugin.pipeline.prefetch import prefetch
from seva_plugin.pipeline.records import LoadedRecord
from seva_plugin.pipeline.threads import build_threads, cpu_threads
from seva_plugin.pipeline.workers import make_workers
from seva_plugin.registry import get_registry

__all__ = ["Build", "BuildResult", "build"]


def check_template(name: str) -> None:
    from llamafactory.data.template import TEMPLATES

    if name not in TEMPLATES:
        raise unknown("template", name, TEMPLATES)


def check_questions(source_name: str, source, strategy, registry) -> None:
    """A source of images with no question serves only a strategy that asks its own prompts."""
    if source.has_questions or not strategy.needs_question:
        return
    own = sorted(e.name for e in registry if e.kind == "strategy" and not e.cls.needs_question)
    raise ConfigError(
        f"source '{source_name}' yields images with no question, and strategy '{strategy.name}' answers each record's question. "
        f"Use a strategy that asks its own prompts ({', '.join(own) or 'none is installed'}), or a source with questions (jsonl, llava, llamafactory)."
    )


class Build:
    def __init__(self, config: BuildConfig | dict | str, overrides: list[str] | None = None):
        self.config = config if isinstance(config, BuildConfig) else load_config(config, overrides)
        cfg, registry = self.config, get_registry()
        # cached hub ids the hub cannot serve now (the model, CSR's CLIP): the run reads them offline
        with hub_checks() as unreachable:
            check_model_path(cfg.model, "model")
            out = cfg.output
            self.files = DatasetFiles(out["dataset_dir"], out["name"])
            self.dataset_dir, self.name = self.files.dataset_dir, self.files.name
            check_writable(self.dataset_dir)

            name, params = source_spec(cfg.source)
            self.source = registry.get("source", name).build(params, "source", seed=cfg.seed)
            # the per-batch components, resolved here so Ray workers build the same ones (pipeline/batch.py)
            self.spec = WorkSpec.resolve(cfg, registry)
            self.work = self.spec.build()
            self.augmenter, self.strategy, self.backend, self.filters = self.work.augmenter, self.work.strategy, self.work.backend, self.work.filters
            check_questions(name, self.source, self.strategy, registry)
            writer_params = {k: v for k, v in out.items() if k not in OUTPUT_KEYS}
            self.writer = registry.get("writer", out["writer"]).build(writer_params, "output", dataset_dir=self.dataset_dir, dataset_name=self.name)
            check_template(cfg.template)
            check_model_template(cfg.model, cfg.template)  # the rule seva check-recipe applies; before any model loads
            self.writer.prepare(out["overwrite"])
        cpu_threads()  # a bad SEVA_TORCH_THREADS fails here, before any model loads
        self.offline = bool(unreachable)

    def fingerprint(self) -> str:
        """What determines the data: everything but limits and the overwrite switch."""
        return fingerprint(self.config.to_dict())

    # -- producing batches -------------------------------------------------------------------
    def _batches(self, journal: Journal, prepare: bool = True):
        """Yield ``(records, rejects)`` batches of decoded records, skipping work the journal has.

        Runs in the prefetch thread. With ``prepare`` (the backend is in this process), the backend
        also prepares the requests the strategy plans for each batch here (prompt ids, image
        processing, augmentation), off the generating thread.
        """
        cfg = self.config
        for batch, rejects in intake.batches(self.source.iter_records(), cfg.seed, self.backend.batch_size, journal.done, cfg.limit):
            yield self._prepared(batch) if prepare else batch, rejects

    def _prepared(self, batch: list[LoadedRecord]) -> list[LoadedRecord]:
        if batch:
            try:
                self.backend.prepare(self.strategy.planned_requests(batch, self.augmenter))
            except Exception:  # noqa: BLE001 - preparing ahead is optional: generate() redoes it, and a record that raises there is bisected out
                pass
        return batch

    # -- running -----------------------------------------------------------------------------
    def run(self, progress: bool = True) -> BuildResult:
        """Generate what the journal does not have yet, then write the outputs. One build per output
        at a time: a second one refuses at once, naming the first (``files.output_lock``)."""
        with output_lock(self.files.lock, f"dataset '{self.name}' in {self.dataset_dir}"), hub_offline(self.offline), build_threads():
            return self._run(progress)

    def _run(self, progress: bool) -> BuildResult:
        from tqdm.auto import tqdm

        started = time.time()
        overwrite = self.config.output["overwrite"]
        journal = Journal(self.files.journal, self.fingerprint(), on_mismatch="restart" if overwrite else "error", config=fingerprinted(self.config.to_dict()))
        counts = Counter(e["kind"] for e in journal.entries())
        # batches run here, or on Ray workers (ray.num_workers > 1); either way they come back in source order
        self.workers = workers = make_workers(self.spec, self.work, self.config.ray)
        total = self._total() if progress else None
        bar = tqdm(
            desc=progress_text(self.name, counts, total),
            unit=" records",
            total=total,
            bar_format="{desc} [{elapsed}, {rate_fmt}]" if total is None else "{desc} {percentage:3.0f}%|{bar:12}| [{elapsed}<{remaining}, {rate_fmt}]",
            disable=not progress,
            initial=sum(counts.values()),
        )
        try:
            workers.start()
            for rejects, processed in workers.map(prefetch(self._batches(journal, prepare=workers.local))):
                entries = [{"kind": "reject", "id": r.id, "reason": r.reason, "code": r.code} for r in rejects]
                entries += processed
                journal.append(entries)
                counts.update(e["kind"] for e in entries)
                bar.set_description_str(progress_text(self.name, counts, total), refresh=False)
                bar.update(len(entries))
        finally:
            bar.close()
            workers.close()
            self.backend.close()
        return self._finalize(journal, started)

    def _total(self) -> int | None:
        """The records this run goes through, resumed ones included, when the source can count them
        (``Source.estimated_length``), capped by ``limit``: the progress bar's total and ETA."""
        try:
            n = self.source.estimated_length()
        except Exception:  # noqa: BLE001 - a progress bar's total never stops a build
            return None
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            return None
        return n if self.config.limit is None else min(n, self.config.limit)

    def _finalize(self, journal: Journal, started: float) -> BuildResult:
        overwrite = self.config.output["overwrite"]
        dropped: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        rejects: list[str] = []

        def pairs():  # one pass over the journal: pairs to the writer, the rest counted
            for e in journal.entries():
                if e["kind"] == "pair":
                    yield e
                elif e["kind"] == "drop":
                    dropped[e["reason"]] += 1
                else:
                    rejected[e["code"]] += 1
                    rejects.append(json.dumps({"id": e["id"], "reason": e["reason"]}, ensure_ascii=False) + "\n")

        written = None
        if any(e["kind"] == "pair" for e in journal.entries()):
            written = checked_write(self.writer, self.writer.write(pairs(), overwrite))
        else:  # nothing to register: the outputs of an earlier build, if any, stay as they were
            for _ in pairs():
                pass
        files = written.manifest_files() if written else {}
        atomic_write_lines(self.files.rejects, rejects)
        seconds = time.time() - started
        kept = written.records if written else 0
        workers = self.workers.describe() if hasattr(self, "workers") else None
        engine = self.backend.describe()
        if workers and workers.get("ray"):  # the engine as the first worker resolved it, and Ray's version
            engine = {**next((w["engine"] for w in workers["workers"] if w.get("engine")), engine), "ray": package_version("ray")}
        record = manifest(
            name=self.name,
            config=self.config.to_dict(),
            fingerprint=self.fingerprint(),
            kept=kept,
            dropped=dropped,
            rejected=rejected,
            resumed=journal.resumed,
            workers=workers,
            engine=engine,
            started=started,
            seconds=seconds,
            files=files,
        )
        atomic_write_json(self.files.manifest, record)
        data_file = written.path if written else self.files.data
        result = BuildResult(
            self.name,
            self.dataset_dir,
            data_file,
            self.files.manifest,
            self.files.rejects,
            kept,
            dict(dropped),
            dict(rejected),
            journal.resumed,
            seconds,
            written.registry if written else None,
        )
        if written is None:
            raise NothingKept(nothing_kept(result, journal.entries()), result)
        self.writer.finish(record)
        return result


def build(config, overrides: list[str] | None = None, progress: bool = True) -> BuildResult:
    return Build(config, overrides).run(progress=progress)
