"""A build: source -> (image loading) -> strategy with augmenter and backend -> filters -> journal -> writer.

Everything that can be checked is checked in ``Build.__init__``, before any model loads.
Images are decoded (and, when the strategy declares its views, prompts encoded and images
processed by the backend) in a background thread while the model generates the previous batch.
"""

from __future__ import annotations

import functools
import json
import platform
import queue
import threading
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import seva_plugin
from seva_plugin.errors import NothingKept, RecordError, show, unknown
from seva_plugin.families import check_model_template
from seva_plugin.interfaces import GenerationRequest
from seva_plugin.pipeline.batch import WorkSpec
from seva_plugin.pipeline.config import OUTPUT_KEYS, BuildConfig, fingerprint, fingerprinted, load_config, source_spec
from seva_plugin.pipeline.dataset_files import DatasetFiles
from seva_plugin.pipeline.files import atomic_write_json, atomic_write_lines, check_writable, output_lock
from seva_plugin.pipeline.images import load_rgb
from seva_plugin.pipeline.journal import Journal
from seva_plugin.pipeline.model_paths import check_model_path
from seva_plugin.pipeline.ray_workers import make_workers
from seva_plugin.pipeline.records import LoadedRecord, Reject, unusable_text
from seva_plugin.pipeline.views import record_seed
from seva_plugin.registry import get_registry

PACKAGES = ("torch", "transformers", "llamafactory", "peft", "trl", "datasets", "pillow", "pluggy")


@dataclass
class BuildResult:
    name: str
    dataset_dir: str
    data_file: str
    manifest_file: str
    rejects_file: str
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    seconds: float = 0.0
    registry: str | None = None  # the dataset_info.json the writer registered the dataset in, if any

    def summary(self) -> str:
        def fmt(counts):
            return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

        return (
            f"{self.kept} pair{'' if self.kept == 1 else 's'} kept in {self.data_file}\n"
            f"dropped: {fmt(self.dropped)}\n"
            f"rejected inputs: {fmt(self.rejected)}"
            + (f" (see {self.rejects_file})" if self.rejected else "")
            + (f"\ndataset '{self.name}' registered in {self.registry}" if self.registry else "")
        )


def check_template(name: str) -> None:
    from llamafactory.data.template import TEMPLATES

    if name not in TEMPLATES:
        raise unknown("template", name, TEMPLATES)


class Build:
    def __init__(self, config: BuildConfig | dict | str, overrides: list[str] | None = None):
        self.config = config if isinstance(config, BuildConfig) else load_config(config, overrides)
        cfg, registry = self.config, get_registry()
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
        writer_params = {k: v for k, v in out.items() if k not in OUTPUT_KEYS}
        self.writer = registry.get("writer", out["writer"]).build(writer_params, "output", dataset_dir=self.dataset_dir, dataset_name=self.name)
        check_template(cfg.template)
        check_model_template(cfg.model, cfg.template)  # the rule seva check-recipe applies; before any model loads
        self.writer.prepare(out["overwrite"])
        # built before any model loads, so the prefetch thread never races the main thread for it
        self.views = self.strategy.views(self.augmenter)

    def fingerprint(self) -> str:
        """What determines the data: everything but limits and the overwrite switch."""
        return fingerprint(self.config.to_dict())

    # -- producing batches -------------------------------------------------------------------
    def _batches(self, journal: Journal, prepare: bool = True):
        """Yield ``(records, rejects)`` batches of decoded records, skipping work the journal has.

        Runs in the prefetch thread. When the strategy declares its views (and ``prepare``: the
        backend is in this process), the backend also prepares each batch here (prompt ids, image
        processing, augmentation), off the generating thread.
        """
        cfg = self.config
        seen: Counter[str] = Counter()
        batch, rejects = [], []
        records = self.source.iter_records()
        try:
            for n, item in enumerate(records):
                if cfg.limit is not None and n >= cfg.limit:
                    break
                seen[item.id] += 1
                if seen[item.id] <= journal.done[item.id]:
                    continue  # finished before a resume
                if isinstance(item, Reject):
                    rejects.append(item)
                    continue
                if seen[item.id] > 1:
                    rejects.append(
                        Reject(item.id, f"duplicate id '{show(item.id, 60)[1:-1]}' (occurrence {seen[item.id]}); the first one was used", "duplicate_id")
                    )
                    continue
                if (bad := unusable_text(item)) is not None:
                    rejects.append(bad)
                    continue
                try:
                    images = [load_rgb(p) for p in item.images]
                    loaded = LoadedRecord(item, images, record_seed(cfg.seed, item.id))
                except RecordError as exc:
                    rejects.append(Reject(item.id, str(exc), exc.code))
                    continue
                except Exception as exc:  # noqa: BLE001 - one record must not stop the build
                    rejects.append(Reject(item.id, f"could not be prepared: {type(exc).__name__}: {show(str(exc), 300)[1:-1]}", "prepare_error"))
                    continue
                batch.append(loaded)
                if len(batch) == self.backend.batch_size:
                    yield self._prepared(batch) if prepare else batch, rejects
                    batch, rejects = [], []
            if batch or rejects:
                yield self._prepared(batch) if prepare else batch, rejects
        finally:
            if isinstance(records, Generator):  # a source's open file is closed now, not at garbage collection
                records.close()

    def _prepared(self, batch: list[LoadedRecord]) -> list[LoadedRecord]:
        if batch and self.views:
            try:
                self.backend.prepare([GenerationRequest(r, view) for view in self.views for r in batch])
            except Exception:  # noqa: BLE001 - preparing ahead is optional: generate() redoes it, and a record that raises there is bisected out
                pass
        return batch

    # -- running -----------------------------------------------------------------------------
    def run(self, progress: bool = True) -> BuildResult:
        """Generate what the journal does not have yet, then write the outputs. One build per output
        at a time: a second one refuses at once, naming the first (``files.output_lock``)."""
        with output_lock(self.files.lock, f"dataset '{self.name}' in {self.dataset_dir}"):
            return self._run(progress)

    def _run(self, progress: bool) -> BuildResult:
        from tqdm.auto import tqdm

        started = time.time()
        overwrite = self.config.output["overwrite"]
        journal = Journal(self.files.journal, self.fingerprint(), on_mismatch="restart" if overwrite else "error", config=fingerprinted(self.config.to_dict()))
        counts = Counter(e["kind"] for e in journal.entries())
        # batches run here, or on Ray workers (ray.num_workers > 1); either way they come back in source order
        self.workers = workers = make_workers(self.spec, self.work, self.config.ray)
        bar = tqdm(
            desc=progress_text(self.name, counts),
            unit=" records",
            bar_format="{desc} [{elapsed}, {rate_fmt}]",
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
                bar.set_description_str(progress_text(self.name, counts), refresh=False)
                bar.update(len(entries))
        finally:
            bar.close()
            workers.close()
            self.backend.close()
        return self._finalize(journal, started)

    def _finalize(self, journal: Journal, started: float) -> BuildResult:
        overwrite = self.config.output["overwrite"]
        dropped, rejected, rejects = Counter(), Counter(), []

        def pairs():  # one pass over the journal: pairs to the writer, the rest counted
            for e in journal.entries():
                if e["kind"] == "pair":
                    yield e
                elif e["kind"] == "drop":
                    dropped[e["reason"]] += 1
                else:
                    rejected[e["code"]] += 1
                    rejects.append(json.dumps({"id": e["id"], "reason": e["reason"]}, ensure_ascii=False) + "\n")

        if any(e["kind"] == "pair" for e in journal.entries()):
            files = self.writer.write(pairs(), overwrite)
        else:  # nothing to register: the outputs of an earlier build, if any, stay as they were
            for _ in pairs():
                pass
            files = {}
        atomic_write_lines(self.files.rejects, rejects)
        seconds = time.time() - started
        kept = files["data"]["records"] if files else 0
        manifest = {
            "name": self.name,
            "seva_plugin": seva_plugin.__version__,
            "config": self.config.to_dict(),
            "fingerprint": self.fingerprint(),
            "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
            "counts": {"kept": kept, "dropped": dict(dropped), "rejected": dict(rejected), "records": kept + sum(dropped.values()) + sum(rejected.values())},
            "resumed": journal.resumed,
            "workers": self.workers.describe() if hasattr(self, "workers") else None,
            "timings": {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)), "seconds_this_run": round(seconds, 2)},
            "files": files,
        }
        atomic_write_json(self.files.manifest, manifest)
        data_file = files["data"]["path"] if files else self.files.data
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
            files.get("dataset_info"),
        )
        if kept == 0:
            raise NothingKept(nothing_kept(result, journal), result)
        self.writer.finish(manifest)
        return result


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def progress_text(name: str, counts: Counter) -> str:
    """The progress bar's text: records done (every record is kept, dropped or rejected), then each."""
    done = counts["pair"] + counts["drop"] + counts["reject"]
    return f"seva build {name}: {plural(done, 'record')} done, {plural(counts['pair'], 'pair')} kept, {counts['drop']} dropped, {counts['reject']} rejected"


def nothing_kept(result: BuildResult, journal: Journal) -> str:
    """Why a build kept no pairs: the commonest reject (or drop) reason, with an example."""
    records = sum(result.rejected.values()) + sum(result.dropped.values())
    if not records:
        return f"the build kept no pairs: its source gave no records (see {result.manifest_file}). Nothing was registered."
    rejected, dropped = sum(result.rejected.values()), sum(result.dropped.values())
    kind, counts, key = ("reject", result.rejected, "code") if rejected >= dropped else ("drop", result.dropped, "reason")
    top, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    example = next((e for e in journal.entries() if e["kind"] == kind and e.get(key) == top), {})
    what = "rejected" if kind == "reject" else "dropped"
    detail = f"{example.get('id')!s}: {example.get('reason')}" if kind == "reject" else str(example.get("id"))
    return (
        f"the build kept no pairs from {plural(records, 'record')} ({rejected} rejected, {dropped} dropped). "
        f"Most were {what} as {top} ({n} of {records}), e.g. {show(detail, 300)[1:-1]}. "
        f"Every reason is in {result.rejects_file} and {result.manifest_file}; nothing was registered in dataset_info.json."
    )


@functools.cache  # the installed versions do not change during a process; reading them is ~15 ms a build
def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def prefetch(iterator: Generator, depth: int = 2):
    """Run ``iterator`` in a background thread, ``depth`` items ahead (image decoding overlaps generation).

    When the consumer stops early (an error, Ctrl-C, ``close()``), the thread stops at its next
    hand-over instead of blocking on a full queue, and closes ``iterator`` (a source's open file).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in iterator:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # re-raised in the consumer
            put(exc)
        finally:
            iterator.close()

    thread = threading.Thread(target=work, daemon=True, name="seva-prefetch")
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def build(config, overrides: list[str] | None = None, progress: bool = True) -> BuildResult:
    return Build(config, overrides).run(progress=progress)
