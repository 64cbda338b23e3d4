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
from collections.abc import Iterator

from seva_plugin.errors import ConfigError, NothingKept, unknown
from seva_plugin.families import check_model_template
from seva_plugin.pipeline import intake
from seva_plugin.pipeline.batch import WorkSpec
from seva_plugin.pipeline.claims import own_manifest, writing
from seva_plugin.pipeline.config import OUTPUT_KEYS, BuildConfig, fingerprint, fingerprinted, load_config, source_spec
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.files import atomic_write_json, atomic_write_lines, check_writable, output_lock
from seva_plugin.pipeline.journal import Journal, changed_keys, journal_fingerprint
from seva_plugin.pipeline.manifest import BuildResult, checked_write, manifest, nothing_kept, package_version, progress_text
from seva_plugin.pipeline.model_paths import check_model_path, hub_checks, hub_offline
from seva_plugin.pipeline.prefetch import prefetch
from seva_plugin.pipeline.records import LoadedRecord
from seva_plugin.pipeline.threads import build_threads, cpu_threads
from seva_plugin.pipeline.workers import make_workers, reject_entry
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
            self._check_outputs(out["overwrite"])
            self.writer.prepare(out["overwrite"])
        cpu_threads()  # a bad SEVA_TORCH_THREADS fails here, before any model loads
        self.offline = bool(unreachable)

    def _check_outputs(self, overwrite: bool) -> None:
        """Replace only what seva-plugin wrote, and a finished build of another config only with ``overwrite``
        (the journal guards a build it holds; this guards a finished one whose journal is gone)."""
        self.files.check_replace([self.files.manifest, self.files.rejects], overwrite)
        previous = own_manifest(self.files)
        if overwrite or not previous or previous.get("fingerprint") == self.fingerprint() or journal_fingerprint(self.files.journal) == self.fingerprint():
            return
        changed = changed_keys(fingerprinted(previous.get("config") or {}) if previous.get("config") else None, fingerprinted(self.config.to_dict()))
        raise ConfigError(
            f"{self.files.manifest} records a build of '{self.name}' with another config" + (f" (changed: {changed})" if changed else "") + ", whose "
            "data this build would replace. Set output.overwrite=true to replace it, or choose another output.name."
        )

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
        for batch, rejects in intake.batches(self.source.iter_records(), cfg.seed, self.backend.batch_size, journal.done, cfg.limit, self.seen):
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
        if journal.done and (changed := intake.stale(self.source.iter_records(), journal.done, journal.inputs, self.config.limit)):
            if not overwrite:
                raise intake.source_changed(changed)
            journal.discard()  # output.overwrite: build the dataset again
        counts = Counter(e["kind"] for e in journal.entries())
        self.seen: Counter[str] = Counter()  # the records of this build: each id's occurrences within the source and limit (intake)
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
                entries = [reject_entry(r) for r in rejects]
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
        in_journal: Counter[str] = Counter()

        def pairs():  # one pass over the journal: pairs to the writer, the rest counted
            for e in self._this_build(journal, in_journal):
                if e["kind"] == "pair":
                    yield e
                elif e["kind"] == "drop":
                    dropped[e["reason"]] += 1
                else:
                    rejected[e["code"]] += 1
                    rejects.append(json.dumps({"id": e["id"], "reason": e["reason"]}, ensure_ascii=False) + "\n")

        with writing(self.files, self.fingerprint()):  # until the manifest lists them, the files being replaced are marked as ours
            written = None
            if any(e["kind"] == "pair" for e in self._this_build(journal)):
                written = checked_write(self.writer, self.writer.write(pairs(), overwrite))
            else:  # nothing to register: the outputs of an earlier build, if any, stay as they were
                for _ in pairs():
                    pass
            files = written.manifest_files() if written else {}
            files["rejects"] = {"path": self.files.rejects, "sha256": atomic_write_lines(self.files.rejects, rejects)}
            record = self._manifest(files, dropped, rejected, journal, started)
            in_data = record["counts"]["records"] + (len(written.skipped) if written else 0)  # with the pairs a Parquet writer left out
            record["journal"] = {"records": sum(in_journal.values()), "pairs": in_journal["pair"], "not_in_this_build": sum(in_journal.values()) - in_data}
            atomic_write_json(self.files.manifest, record)
        kept = record["counts"]["kept"]
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
            record["timings"]["seconds_this_run"],
            written.registry if written else None,
            record["journal"]["not_in_this_build"],
        )
        if kept == 0:
            raise NothingKept(nothing_kept(result, self._this_build(journal)), result)
        self.writer.finish(record)
        return result

    def _this_build(self, journal: Journal, in_journal: Counter[str] | None = None) -> Iterator[dict]:
        """The journal's entries of this build's records: not those past a lower ``limit`` or gone from the
        source (``in_journal`` counts all of them by kind)."""
        occurrences: Counter[str] = Counter()
        for e in journal.entries():
            if in_journal is not None:
                in_journal[e["kind"]] += 1
            occurrences[e["id"]] += 1
            if occurrences[e["id"]] <= self.seen[e["id"]]:
                yield e

    def _manifest(self, files: dict, dropped: Counter[str], rejected: Counter[str], journal: Journal, started: float) -> dict:
        seconds = time.time() - started
        kept = files["data"]["records"] if "data" in files else 0
        workers = self.workers.describe() if hasattr(self, "workers") else None
        engine = self.backend.describe()
        if workers and workers.get("ray"):  # the engine as the first worker resolved it, and Ray's version
            engine = {**next((w["engine"] for w in workers["workers"] if w.get("engine")), engine), "ray": package_version("ray")}
        return manifest(
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


def build(config, overrides: list[str] | None = None, progress: bool = True) -> BuildResult:
    return Build(config, overrides).run(progress=progress)
