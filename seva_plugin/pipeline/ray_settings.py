"""The ``ray`` block of a build config: how many workers, what each one holds, which cluster.

Checked strictly here, without importing Ray. The names follow LLaMA-Factory's own Ray options
(``ray_num_workers``, ``resources_per_worker``, ``ray_init_kwargs``). None of them changes the data:
they are left out of the build's fingerprint, so a build started on one GPU resumes on eight.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from seva_plugin.errors import ConfigError, show, unknown
from seva_plugin.registry import check_value

if TYPE_CHECKING:
    from seva_plugin.pipeline.batch import WorkSpec

DEFAULTS: dict[str, Any] = {
    "num_workers": 1,  # 1: the build runs in this process, Ray is never imported
    "resources_per_worker": None,  # None: {GPU: <the backend's tensor_parallel_size or 1>} on a cluster with GPUs, else {CPU: 1}
    "address": None,  # None: start a local Ray (or use the one this process is connected to); auto / ray://host:port / host:port: join
    "init_kwargs": {},  # more ray.init() arguments (runtime_env, num_cpus, _temp_dir, ...)
    "max_restarts": 3,  # deaths in a row (a record that crashes it aside) before a worker is given up
    "batches_per_worker": 2,  # batches in flight per worker: one generating, one queued behind it
}

RAY_PRECISION = 0.0001  # Ray refuses a fractional resource finer than this
_ADDRESS = re.compile(r"^(auto|local|ray://[^\s/]+:\d+|[^\s:/]+:\d+)$")
_RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


def ray_settings(raw: Any) -> dict[str, Any]:
    """``raw`` (the config's ``ray`` value: absent, ``null`` or a mapping) -> every key, checked, defaults filled in."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"ray must be a mapping (num_workers, resources_per_worker, address, init_kwargs), got {show(raw)}.")
    for key in raw:
        if key not in DEFAULTS:
            raise unknown("key", key, DEFAULTS, "ray")
    out = {**DEFAULTS, **raw}
    for key, least in (("num_workers", 1), ("max_restarts", 0), ("batches_per_worker", 1)):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"ray.{key} must be an integer of at least {least}, got {show(value)}.")
    out["resources_per_worker"] = _resources(out["resources_per_worker"])
    address = out["address"]
    if address is not None and not (isinstance(address, str) and _ADDRESS.match(address)):
        raise ConfigError(
            "ray.address must be null (start a local Ray), 'auto' (the cluster `ray start` made on this machine), 'ray://host:port' or 'host:port'; "
            f"got {show(address)}."
        )
    kwargs = out["init_kwargs"] or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ConfigError(f"ray.init_kwargs must be a mapping of ray.init() arguments, got {show(kwargs)}.")
    if "address" in kwargs:
        raise ConfigError("ray.init_kwargs.address: set ray.address instead.")
    out["init_kwargs"] = dict(kwargs)
    return out


def _resources(value: Any) -> dict[str, float] | None:
    """``{GPU: 1}``; also the ``{GPU:1}`` form a shell override gives (YAML reads it as the key ``'GPU:1'``)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"ray.resources_per_worker must be a mapping such as {{GPU: 1}} or {{CPU: 1}}, got {show(value)}.")
    out: dict[str, float] = {}
    for key, amount in value.items():
        if amount is None and isinstance(key, str) and ":" in key:  # `{GPU:1}` on a command line
            key, _, text = key.partition(":")
            try:
                amount = float(text) if "." in text else int(text)
            except ValueError:
                raise ConfigError(f"ray.resources_per_worker: {key}:{text} is not a number.") from None
        if not isinstance(key, str) or not _RESOURCE_NAME.match(key.strip()):
            raise ConfigError(f"ray.resources_per_worker: {show(key)} is not a resource name (CPU, GPU, memory or a custom resource).")
        label = f"ray.resources_per_worker.{key}"
        check_value(label, amount, "float")  # the one type rule: a number, finite
        if amount < 0:
            raise ConfigError(f"{label} must be a number of at least 0, got {show(amount)}.")
        if abs(round(amount, 4) - amount) > 1e-12:
            raise ConfigError(f"{label} must be a whole number of Ray's smallest share, {RAY_PRECISION}, got {show(amount)}.")
        out[key.strip()] = amount
    if not any(out.values()):
        raise ConfigError(f"ray.resources_per_worker asks for nothing: {show(value)}. Give each worker a GPU ({{GPU: 1}}) or a CPU ({{CPU: 1}}).")
    return out


def uses_ray(settings: dict[str, Any] | None) -> bool:
    return bool(settings and settings["num_workers"] > 1)


def actor_options(resources: dict[str, float]) -> dict[str, Any]:
    """``ray.remote(...).options()`` for a worker holding ``resources``. Ray restarts a worker that dies
    however often, and retries nothing itself: the driver decides what a death means (``ray_dispatch.py``)
    and gives up a worker after ``ray.max_restarts`` deaths in a row."""
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory")}
    options: dict[str, Any] = {
        "num_cpus": resources.get("CPU", 1),  # a GPU worker still decodes images and renders prompts
        "num_gpus": resources.get("GPU", 0),
        "max_restarts": -1,
        "max_task_retries": 0,
    }
    if "memory" in resources:
        options["memory"] = resources["memory"]
    if custom:
        options["resources"] = custom
    return options


def tensor_parallel(spec: WorkSpec) -> int:
    """GPUs one backend replica spans (the backend's ``tensor_parallel_size``)."""
    value = spec.backend_params.get("tensor_parallel_size", 1)
    return value if isinstance(value, int) and value > 0 else 1
