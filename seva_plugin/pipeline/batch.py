"""The per-batch work of a build, the one code path for a build in one process and for each Ray worker.

:class:`WorkSpec` names the components a batch needs (augmenter, strategy, backend, filters) as
registry entries plus their parameters: the driver resolves it against its own registry, so a
plugin registered only in the driver process still reaches the workers. :class:`BatchWork`
holds those components and turns a batch of loaded records into journal entries:
``strategy.make_pairs`` -> end-of-sequence text stripped -> filters; each entry also notes why its
answers ended (``finish``, ``endings.py``), which the writers do not write.

An exception raised for a batch is narrowed down by bisection: the halves are retried until the
record that raises is found, and it becomes a reject with the exception as its reason, while the
other records of the batch get their pairs. Only an error that is the record's own is journaled as
its reject; these stop the build instead (nothing of the batch is journaled, and the rerun answers
it once the problem is fixed):

- a configuration problem (``ConfigError``);
- an error before any record was answered (no answer yet from this worker's backend, nor in the
  bisection): a model that does not load, whatever its message;
- running out of memory (``MemoryError``, torch's ``OutOfMemoryError``, "out of memory") on one record
  alone (a larger part is split first: its halves may fit), and an engine that died;
- a batch where every record fails with the same exception (other than a ``RecordError``, which
  always names a fault of its record).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from seva_plugin.errors import ConfigError, RecordError, SevaError, short
from seva_plugin.pipeline.config import BuildConfig, split_spec
from seva_plugin.pipeline.endings import NotingBackend
from seva_plugin.pipeline.records import LoadedRecord
from seva_plugin.pipeline.text import strip_eos

GENERATION_ERROR = "generation_error"


# (registry entry, its parameters, where it is configured, what the build adds to them)
ComponentSpec = tuple[Any, dict[str, Any], str, dict[str, Any]]


class BatchFailed(SevaError):
    """A batch failed for a reason that is not its records' (``bisect``): the build stops, nothing of it journaled."""


OUT_OF_MEMORY = ("MemoryError", "OutOfMemoryError")  # Python's; torch's (torch.cuda.OutOfMemoryError is the same class)
ENGINE_DIED = ("EngineDeadError",)  # vLLM's: the engine process is gone, every later request fails


def not_the_records(exc: BaseException) -> str | None:
    """Why ``exc`` is a problem of the machine or the engine, never of a record: "memory", "engine", or None."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(OUT_OF_MEMORY) or "out of memory" in str(exc).lower():
        return "memory"
    if names & set(ENGINE_DIED):
        return "engine"
    return None


@dataclass(frozen=True)
class WorkSpec:
    """The per-batch components as ``(registry entry, params, context)``; picklable, built anywhere."""

    augment: ComponentSpec
    strategy: ComponentSpec
    backend: ComponentSpec
    filters: tuple[ComponentSpec, ...] = ()

    @classmethod
    def resolve(cls, cfg: BuildConfig, registry) -> WorkSpec:
        """Look every component up in ``registry`` (unknown names fail here)."""
        name, params = split_spec(cfg.augment, "augment")
        augment: ComponentSpec = (registry.get("augmenter", name), params, "augment", {})
        name, params = split_spec(cfg.strategy, "strategy", default="seva")
        strategy: ComponentSpec = (registry.get("strategy", name), params, "strategy", {})
        name, params = split_spec(cfg.backend, "backend", default="hf")
        backend: ComponentSpec = (registry.get("backend", name), params, "backend", {"model": cfg.model, "template": cfg.template})
        filters: tuple[ComponentSpec, ...] = tuple(
            (registry.get("filter", n), p, f"filter '{n}'", {}) for n, p in (split_spec(f, "filters") for f in cfg.filters)
        )
        return cls(augment, strategy, backend, filters)

    def build(self) -> BatchWork:
        """Instantiate the components (parameters checked strictly; no model loads here)."""

        def make(entry: ComponentSpec) -> Any:
            component, params, where, context = entry
            return component.build(params, where, **context)

        work = BatchWork(make(self.augment), make(self.strategy), make(self.backend), [make(f) for f in self.filters])
        if work.strategy.needs_score and not work.backend.can_score():
            raise ConfigError(
                f"strategy '{work.strategy.name}' scores texts (Backend.score), which backend '{work.backend.name}' does not serve; "
                "use a backend that scores, such as hf or vllm."
            )
        return work

    @property
    def backend_params(self) -> dict[str, Any]:
        return dict(self.backend[1])


@dataclass
class BatchWork:
    augmenter: Any
    strategy: Any
    backend: Any
    filters: list = field(default_factory=list)

    @property
    def provenance(self) -> dict[str, Any]:
        return {"strategy": self.strategy.name, "augment": self.augmenter.name if self.strategy.uses_augmenter else None}

    answered: int = 0  # successful calls of the strategy and backend: evidence that the setup works

    def process(self, batch: Sequence[LoadedRecord]) -> list[dict]:
        """Journal entries for ``batch``, one per record, in its order: pairs, drops, and rejects for
        records whose generation raised."""

        def work(part: list[LoadedRecord]) -> list[dict]:
            entries = self.entries(part)
            self.answered += 1
            return entries

        return bisect(list(batch), work, answered_before=self.answered > 0)

    def entries(self, batch: Sequence[LoadedRecord]) -> list[dict]:
        """Journal entries for ``batch``; raises what the strategy or backend raises."""
        noting = NotingBackend(self.backend)  # why each answer ended, for the journal (pipeline/endings.py)
        pairs = {p.record.id: p for p in self.strategy.make_pairs(batch, noting, self.augmenter)} if batch else {}
        provenance = self.provenance
        entries = []
        for loaded in batch:
            pair = pairs.get(loaded.id)
            if pair is None:
                entries.append({"kind": "drop", "id": loaded.id, "reason": "no_pair", "inputs": loaded.inputs})
                continue
            if pair.record != loaded.record:
                raise ConfigError(
                    f"strategy '{self.strategy.name}' returned a pair for record '{loaded.id}' with another record than the one it was given: "
                    "a strategy never builds records (set Pair.prompt to train on another prompt)."
                )
            finish = noting.finish(pair)
            pair = replace(pair, chosen=strip_eos(pair.chosen), rejected=strip_eos(pair.rejected))
            reason = next((r for r in (f(pair) for f in self.filters) if r), None)
            entry = {**pair.to_json(), "provenance": {**provenance, "seed": loaded.seed}, "inputs": loaded.inputs, **({"finish": finish} if finish else {})}
            entries.append({"kind": "drop", "reason": reason, **entry} if reason else {"kind": "pair", **entry})
        return entries

    def close(self) -> None:
        self.backend.close()


def reject_entry(record: LoadedRecord, exc: BaseException) -> dict:
    if isinstance(exc, RecordError):
        return {"kind": "reject", "id": record.id, "reason": short(exc), "code": exc.code, "inputs": record.inputs}
    reason = f"generation failed: {type(exc).__name__}: {short(exc)}"
    return {"kind": "reject", "id": record.id, "reason": reason, "code": GENERATION_ERROR, "inputs": record.inputs}


def bisect(batch: list[LoadedRecord], work: Callable[[list[LoadedRecord]], list[dict]], answered_before: bool = True) -> list[dict]:
    """``work(batch)``; where it raises, the halves again, down to the records that raise. Raises
    BatchFailed where the failure is not the records' (module docstring); ``answered_before``: the
    backend has answered a batch before this one."""
    failures: list[BaseException] = []
    answered = [answered_before]

    def run(part: list[LoadedRecord]) -> list[dict]:
        try:
            entries = work(part)
            answered[0] = True
            return entries
        except SevaError as exc:
            if not isinstance(exc, RecordError):
                raise  # the config, not the record
            error: Exception = exc
        except Exception as exc:  # noqa: BLE001 - narrowed down to the record that raises
            error = exc
        cause = not_the_records(error)
        if cause == "engine" or (cause == "memory" and len(part) == 1):
            what = "the engine died" if cause == "engine" else f"out of memory on record '{part[0].id}' alone"
            raise BatchFailed(
                f"{what} ({type(error).__name__}: {short(error)}): not the record's fault, so nothing of this batch was journaled. "
                "Free the memory (or lower backend.batch_size, backend.image_max_pixels), and rerun: finished batches are kept."
            ) from error
        if len(part) == 1:
            failures.append(error)
            return [reject_entry(part[0], error)]
        half = len(part) // 2
        return run(part[:half]) + run(part[half:])

    entries = run(batch)
    unexplained = [e for e in failures if not isinstance(e, RecordError)]  # a RecordError is always its record's own
    if unexplained and not answered[0]:
        error = unexplained[0]
        raise BatchFailed(
            f"no record has been answered yet and every one tried failed ({len(unexplained)} from '{batch[0].id}'), which is a problem of the "
            f"setup (a model that does not load, say), not of the records: {type(error).__name__}: {short(error)}. Nothing was journaled; "
            "fix it and rerun."
        ) from error
    systematic = len(batch) > 1 and len(failures) == len(batch) and not any(isinstance(e, RecordError) for e in failures)  # RecordError: the record's own
    if systematic and len({f"{type(e).__name__}: {e}" for e in failures}) == 1:
        error = failures[0]
        raise BatchFailed(
            f"every record of a batch ({len(batch)} records, from '{batch[0].id}') failed with the same error, which looks like a problem "
            f"of the setup rather than of the records: {type(error).__name__}: {short(error)}"
        ) from error
    return entries
