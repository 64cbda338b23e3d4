"""One rule for "is this a local path or a hub id", used for every model a build names.

A hub id must be usable before anything loads: in the local Hugging Face cache, or on a hub that
answers within ``PROBE_SECONDS``. Without network, transformers retries for minutes and ends in a
long traceback; here it is one message, in seconds. When the model is cached and the hub cannot be
reached, the build that named it runs offline (``HF_HUB_OFFLINE``) so nothing waits on the network
later; the process around it (a notebook, ``seva iterate``) keeps its own setting.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from urllib.parse import urlparse

from seva_plugin.errors import ConfigError

# The hub ids that checks made inside ``hub_checks()`` found cached but unreachable.
_unreachable: ContextVar[list[str] | None] = ContextVar("seva_unreachable_hub_ids", default=None)


@contextlib.contextmanager
def hub_checks() -> Iterator[list[str]]:
    """Collect the hub ids that ``check_model_path`` calls inside find in the cache while the hub
    cannot be reached: what must then be read offline (``hub_offline``)."""
    found: list[str] = []
    token = _unreachable.set(found)
    try:
        yield found
    finally:
        _unreachable.reset(token)


@contextlib.contextmanager
def hub_offline(on: bool = True) -> Iterator[None]:
    """Hugging Face offline mode for what runs inside, undone after: huggingface_hub's flag, which
    transformers reads, and ``HF_HUB_OFFLINE`` for the processes started inside (vLLM engines, Ray)."""
    if not on:
        yield
        return
    from huggingface_hub import constants

    flag, env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = flag
        if env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = env


def looks_local(path: str) -> bool:
    """A hub id is ``owner/name``. Anything else, or ``a/b`` whose first part is a local folder
    (``models/llava`` next to a ``models/`` folder), is meant as a local path."""
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        return True
    return os.path.isdir(path.split("/", 1)[0])


def check_model_path(path: str, key: str) -> bool:
    """Fail before anything loads when ``path`` (config key ``key``) is neither a model folder nor a
    hub id. True when it is a hub id to read offline (see ``check_hub_id``)."""
    expanded = os.path.expanduser(path)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, "config.json")):
            raise ConfigError(f"{key}: the folder {path} has no config.json, so it is not a model folder.")
    elif looks_local(path):
        raise ConfigError(f"{key}: model path not found: {path}")
    else:
        return check_hub_id(path, key)
    return False


PROBE_SECONDS = 3.0


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def check_hub_id(repo_id: str, key: str) -> bool:
    """Fail fast, with what to do, when hub id ``repo_id`` can be neither read from the local cache
    nor downloaded: ``HF_HUB_OFFLINE`` is set, or the hub does not answer a connection in
    ``PROBE_SECONDS``. True when it is cached and the hub cannot be reached, so it must be read
    offline (noted for the enclosing ``hub_checks()``); nothing here changes the process's mode."""
    from huggingface_hub import constants, try_to_load_from_cache

    cache = constants.HF_HUB_CACHE
    try:
        cached = isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache), str)
    except Exception:  # noqa: BLE001 - an id the hub library refuses is not in the cache
        cached = False
    offline = constants.HF_HUB_OFFLINE or _true(os.environ.get("HF_HUB_OFFLINE")) or _true(os.environ.get("TRANSFORMERS_OFFLINE"))
    if cached and offline:
        return False  # offline already
    where = f"not in the local Hugging Face cache ({cache})"
    todo = f"Download it where there is network (`hf download {repo_id}`, then copy the cache), or set {key} to a local model folder."
    if offline:
        raise ConfigError(f"{key}: {repo_id} is a hub id {where}, and HF_HUB_OFFLINE is set. {todo}")
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    problem = hub_unreachable(endpoint)
    if problem is None:
        return False
    if cached:  # read it from the cache without waiting on the network
        found = _unreachable.get()
        if found is not None:
            found.append(repo_id)
        return True
    raise ConfigError(f"{key}: {repo_id} is a hub id {where}, and this machine cannot reach {endpoint} ({problem}). {todo}")


def hub_unreachable(endpoint: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why ``endpoint`` gives no HTTP answer within ``timeout`` seconds (name lookup included), or
    None when it answers (any status: the hub is there). Proxies in the environment are used, as
    the download would use them."""
    import urllib.error
    import urllib.request

    if not urlparse(endpoint).hostname:
        return f"not a URL: {endpoint}"
    outcome: list[str | None] = []

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint.rstrip("/") + "/api/models", method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # an HTTP status: something that speaks HTTP answered
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            outcome.append(str(getattr(reason, "strerror", None) or reason)[:200])

    thread = threading.Thread(target=probe, daemon=True, name="seva-hub-probe")
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer in {timeout:g} s"
