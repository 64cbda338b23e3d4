"""Stand-in for ``trl`` on a GPU machine without it (``benchmarks/gpu.py``): LLaMA-Factory's model loader
imports the value-head class for reward-model training, which generation never builds."""


class AutoModelForCausalLMWithValueHead:
    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        raise ImportError("trl is not installed here: benchmarks/gpu_shims stands in for it (no value-head models)")
