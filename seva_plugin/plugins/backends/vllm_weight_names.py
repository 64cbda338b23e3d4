"""vLLM reads the LLaVA, LLaVA-NeXT and InternVL checkpoints that transformers 5.5 saves.

transformers 5.5 (checked: 5.5.4) saves ``LlavaForConditionalGeneration``,
``LlavaNextForConditionalGeneration`` and ``InternVLForConditionalGeneration`` with the language
model under ``model.language_model.model.*`` (its "llava" checkpoint conversion renames
``language_model.model`` to ``language_model`` wherever it occurs, and ``save_pretrained`` applies
the reverse to the model's own ``model.language_model.*``). ``llamafactory-cli export`` and the
twins save that way too. vLLM 0.26 maps ``model.language_model.`` to ``language_model.model.`` for
these classes (``hf_to_vllm_mapper`` in ``vllm/model_executor/models/llava.py``, ``llava_next.py``,
``interns1.py``) and stops with "There is no module or parameter named 'model' in LlamaModel".
transformers 5.6.0 saves ``language_model.model.*`` instead, which vLLM reads, as it reads the
checkpoints on the hub.

So the package's vLLM general plugin (entry point group ``vllm.general_plugins``; vLLM calls it
in every process it starts) registers these architectures again, lazily, under this module,
which hands vLLM its own class with one more rule in its weight-name mapper:
``model.language_model.model.`` reads as ``model.language_model.``. No file is converted or
copied. A name in that layout fails to load in vLLM without the rule, so the rule changes nothing
else; where vLLM's registry does not name the module and class below (another vLLM release), it
is left as it is.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any

# architecture -> vLLM 0.26's (module, class) for it
ARCHITECTURES = {
    "LlavaForConditionalGeneration": ("vllm.model_executor.models.llava", "LlavaForConditionalGeneration"),
    "LlavaNextForConditionalGeneration": ("vllm.model_executor.models.llava_next", "LlavaNextForConditionalGeneration"),
    "InternVLForConditionalGeneration": ("vllm.model_executor.models.interns1", "InternS1ForConditionalGeneration"),
}
NESTED = re.compile(r"^model\.language_model\.model\.")  # transformers 5.5's language model
FLAT = "model.language_model."  # the name vLLM's own rules map on to language_model.model.


def register() -> None:
    """vLLM general plugin: send each architecture above to this module (nothing is imported until vLLM loads one)."""
    from vllm import ModelRegistry

    for architecture, (module, cls) in ARCHITECTURES.items():
        entry = ModelRegistry.models.get(architecture)
        if (getattr(entry, "module_name", None), getattr(entry, "class_name", None)) == (module, cls):
            ModelRegistry.register_model(architecture, f"{__name__}:{architecture}")


def accepting_nested_names(model_cls: Any) -> Any:
    """``model_cls`` with ``model.language_model.model.*`` read as ``model.language_model.*`` (idempotent)."""
    mapper = model_cls.hf_to_vllm_mapper
    if NESTED not in mapper.orig_to_new_regex:  # the regex rules run before the prefix rules
        model_cls.hf_to_vllm_mapper = dataclasses.replace(mapper, orig_to_new_regex={NESTED: FLAT, **mapper.orig_to_new_regex})
    return model_cls


def __getattr__(architecture: str) -> Any:
    if architecture not in ARCHITECTURES:
        raise AttributeError(f"module {__name__!r} has no attribute {architecture!r}")
    module, cls = ARCHITECTURES[architecture]
    return accepting_nested_names(getattr(importlib.import_module(module), cls))
