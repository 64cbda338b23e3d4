"""The per-batch work of a build, the one code path for a build in one process and for each Ray worker.

:class:`WorkSpec` names the components a batch needs (augmenter, strategy, backend, filters) as
registry entries plus their parameters: the driver resolves it against its own registry, so a
plugin registered only in the driver process still reaches the workers. :class:`BatchWork`
holds those components and turns a batch of loaded records into journal entries:
``strategy.make_pairs`` -> end-of-sequence text stripped -> filters; each entry also notes why its
answers ended (``finish``, ``endings.py``), which the writers do not write.

An exception raised for a batch is narrowed down by bisection: the halves are retried until the
record that raises is found, and it becomes a reject with the exception as its reason, while the
other records of the batch get their pairs. A configuration problem (``ConfigError``) is not a
record's fault and stops the build, as does a batch where every record fails with the same
exception (other than a ``RecordError``, which always names a fault of its record).
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
    """Every record of a batch failed with the same error: a systematic problem, not bad records."""


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

    def process(self, batch: Sequence[LoadedRecord]) -> list[dict]:
        """Journal entries for ``batch``, one per record, in its order: pairs, drops, and rejects for
        records whose generation raised."""
        return bisect(list(batch), self.entries)

    def entries(self, batch: Sequence[LoadedRecord]) -> list[dict]:
        """Journal entries for ``batch``; raises what the strategy or backend raises."""
        noting = NotingBackend(self.backend)  # why each answer ended, for the journal (pipeline/endings.py)
        pairs = {p.record.id: p for p in self.strategy.make_pairs(batch, noting, self.augmenter)} if batch else {}
        provenance = self.provenance
        entries = []
        for loaded in batch:
            pair = pairs.get(loaded.id)
            if pair is None:
                entries.append({"kind": "drop", "id": loaded.id, "reason": "no_pair"})
                continue
            if pair.record != loaded.record:
                raise ConfigError(
                    f"strategy '{self.strategy.name}' returned a pair for record '{loaded.id}' with another record than the one it was given: "
                    "a strategy never builds records (set Pair.prompt to train on another prompt)."
                )
            finish = noting.finish(pair)
            pair = replace(pair, chosen=strip_eos(pair.chosen), rejected=strip_eos(pair.rejected))
            reason = next((r for r in (f(pair) for f in self.filters) if r), None)
            entry = {**pair.to_json(), "provenance": {**provenance, "seed": loaded.seed}, **({"finish": finish} if finish else {})}
            entries.append({"kind": "drop", "reason": reason, **entry} if reason else {"kind": "pair", **entry})
        return entries

    def close(self) -> None:
        self.backend.close()


def reject_entry(record_id: str, exc: BaseException) -> dict:
    if isinstance(exc, RecordError):
        return {"kind": "reject", "id": record_id, "reason": short(exc), "code": exc.code}
    return {"kind": "reject", "id": record_id, "reason": f"generation failed: {type(exc).__name__}: {short(exc)}", "code": GENERATION_ERROR}


def bisect(batch: list[LoadedRecord], work: Callable[[list[LoadedRecord]], list[dict]]) -> list[dict]:
    """``work(batch)``; where it raises, the halves again, down to the records that raise."""
    failures: list[BaseException] = []

    def run(part: list[LoadedRecord]) -> list[dict]:
        try:
            return work(part)
        except SevaError as exc:
            if not isinstance(exc, RecordError):
                raise  # the config, not the record
            error: Exception = exc
        except Exception as exc:  # noqa: BLE001 - narrowed down to the record that raises
            error = exc
        if len(part) == 1:
            failures.append(error)
            return [reject_entry(part[0].id, error)]
        half = len(part) // 2
        return run(part[:half]) + run(part[half:])

    entries = run(batch)
    systematic = len(batch) > 1 and len(failures) == len(batch) and not any(isinstance(e, RecordError) for e in failures)  # RecordError: the record's own
    if systematic and len({f"{type(e).__name__}: {e}" for e in failures}) == 1:
        error = failures[0]
        raise BatchFailed(
            f"every record of a batch ({len(batch)} records, from '{batch[0].id}') failed with the same error, which looks like a problem "
            f"of the setup rather than of the records: {type(error).__name__}: {short(error)}"
        ) from error
    return entries
