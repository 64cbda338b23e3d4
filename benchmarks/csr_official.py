"""The loop a CSR user would otherwise run: the official code's style (``YiyangZhou/CSR``, ``inference_csr/``).

Three phases per prompt, one prompt at a time, plain transformers, as the official scripts do:

1. **sample** (``sample.py``'s ``sentence_level_beam_search_tree``): from the root, each live node is
   continued by one ``model.generate`` call that re-encodes the prompt, the image and the node's
   text (``processor(text=prompt + text, images=image)``) and returns ``num_proposals`` sequences of
   up to ``max_sentence_tokens`` tokens, stopping at the sentence-end token; the children that did
   not end are ranked by their summed language score and the best ``keep_best`` and worst
   ``keep_worst`` survive;
2. **score** (``score.py``'s ``dfs_score``): every sentence of the tree gets its CLIP score from a
   full ``CLIPModel`` forward on the sentence and the image (``logits_per_image``), one sentence
   per call;
3. **construct** (``construct.py``): sibling ranks by language and by CLIP score, the fused rank
   score per finished path, the best and the worst as the pair.

What is the same as the builder's CSR search, so that the two do the same work: the number of
proposals, the sentence cap, the answer cap, the survivors (``scoring.prune``'s rule: the
official code keeps all children while fewer than ``num_beams`` exist, which would only add work
here), CLIP scoring of every sentence. What is the official code's own: a sentence ends at the
sentence-end *token* (and at the template's stop tokens, which the builder also stops at), the
proposals come from ``generate``'s own sampler (the official code's diverse beam search is not in
transformers 5; the builder samples too, see docs/csr.md) and the language score is the mean
log-probability of a proposal's tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Node:
    text: str  # the answer so far
    sentence: str = ""  # this node's own sentence
    language: float = 0.0  # mean log-probability of the sentence's tokens
    score: float = 0.0  # summed language score along the path (what the official sampler ranks by)
    final: bool = False
    children: list[Node] = field(default_factory=list)
    visual: float | None = None


@dataclass
class OfficialRun:
    seconds: float
    pairs: int
    proposals: int
    generated_tokens: int
    generate_calls: int
    clip_calls: int


def run_official_loop(model, processor, clip_model, clip_processor, prompts: list[str], settings: dict, rows: list[dict], seed: int = 0) -> OfficialRun:
    """``prompts``: each row's prompt rendered by the template (one ``<image>`` marker, which
    ``processor(text=...)`` expands); ``settings``: the CSR keys; ``rows``: the prompt file's rows (``image``)."""
    import torch
    from PIL import Image

    from seva_plugin.plugins.strategies.csr.scoring import Candidate, Step, prune, select_pair, sibling_ranks

    tokenizer = processor.tokenizer
    stop_ids = settings["stop_ids"]
    sentence_end = [tokenizer.convert_tokens_to_ids(c) for c in settings["sentence_end"]]
    counts = {"proposals": 0, "tokens": 0, "generate": 0, "clip": 0, "pairs": 0}
    n, cap, chars = settings["num_proposals"], settings["max_sentence_tokens"], settings["max_response_chars"]

    def sample(prompt: str, image: Any) -> Node:
        root = Node("")
        live = [root]
        while live:
            children = []
            for node in live:
                inputs = processor(images=[image], text=prompt + node.text, return_tensors="pt", add_special_tokens=False)
                out = model.generate(
                    **inputs,
                    do_sample=True,
                    temperature=settings["temperature"],
                    top_p=settings["top_p"],
                    num_return_sequences=n,
                    max_new_tokens=cap,
                    eos_token_id=sentence_end + stop_ids,
                    pad_token_id=settings["pad_id"],
                    output_logits=True,
                    return_dict_in_generate=True,
                )
                counts["generate"] += 1
                new = out.sequences[:, inputs["input_ids"].shape[1] :]
                logp = torch.stack(out.logits, dim=1).float().log_softmax(-1).gather(-1, new[..., None]).squeeze(-1)
                for j, ids in enumerate(new.tolist()):
                    length = next((k + 1 for k, t in enumerate(ids) if t in sentence_end or t in stop_ids), len(ids))
                    sentence = tokenizer.decode(ids[:length], skip_special_tokens=True)
                    language = float(logp[j, :length].mean())
                    text = node.text + sentence
                    child = Node(text, sentence.strip(), language, node.score + language)
                    child.final = any(t in stop_ids for t in ids[:length]) or len(text.strip()) >= chars
                    node.children.append(child)
                    counts["proposals"] += 1
                    counts["tokens"] += length
                    if not child.final:
                        children.append(child)
            live = prune(children, lambda c: c.score, settings["keep_best"], settings["keep_worst"])
        return root

    def score(node: Node, image: Any) -> None:
        for child in node.children:
            if len(child.sentence) >= settings["min_sentence_chars"]:
                inputs = clip_processor(text=[child.sentence], images=image, return_tensors="pt", padding=True, truncation=True, max_length=77)
                child.visual = float(clip_model(**inputs).logits_per_image[0][0])
                counts["clip"] += 1
                score(child, image)
        node.children = [c for c in node.children if c.visual is not None]

    def construct(root: Node) -> tuple[Candidate, Candidate] | None:
        finals: list[Candidate] = []

        def walk(node: Node, steps: list[Step]) -> None:
            if not node.children:
                return
            rank_t = sibling_ranks([c.language for c in node.children])
            rank_c = sibling_ranks([c.visual or 0.0 for c in node.children])
            for child, rt, rc in zip(node.children, rank_t, rank_c, strict=True):
                path = [*steps, Step(child.sentence, child.language, child.visual or 0.0, rt, rc)]
                if child.final:
                    finals.append(Candidate(child.text.strip(), path, order=len(finals)))
                walk(child, path)

        walk(root, [])
        return select_pair(finals, "repo", 0.9, settings["clip_alpha"])

    start = time.perf_counter()
    with torch.inference_mode():
        for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
            torch.manual_seed(seed + i)
            image = Image.open(row["image"]).convert("RGB")
            root = sample(prompt, image)
            score(root, image)
            counts["pairs"] += construct(root) is not None
    seconds = time.perf_counter() - start
    return OfficialRun(seconds, counts["pairs"], counts["proposals"], counts["tokens"], counts["generate"], counts["clip"])
