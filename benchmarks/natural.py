"""Natural answer lengths: a tiny LLaVA taught to end its answers by itself at very different lengths.

Every other bench row forces ``min_new_tokens = max_new_tokens``. Real SeVa answers stop at an
end-of-sequence token: OCR-VQA answers after a word or two, TextCaps captions after a sentence,
and now and then an answer runs long. A static batch (``hf``) keeps decoding until its longest
answer ends; continuous batching (``vllm``) drops a finished sequence at once.

To measure that honestly on CPU, :func:`train_natural_model` teaches a tiny LLaVA twin (head
size 32, so vLLM's CPU attention can run it too) with a plain torch loop, for a few seconds:

- the six OCR-VQA questions (with LLaVA-1.5's "Answer the question using a single word or
  phrase.") get answers of 1 to 4 words;
- caption prompts ("Provide a <kind> caption for the provided image." plus OCR tokens) get
  captions whose length depends on the kind word: 5 to 96 words, most of them 8 to 20.

An answer is the start of one fixed text of distinct words, so the model only has to learn where
to stop; it then ends each answer with its end-of-sequence token, on its own, during the build.
The model's stop lengths are checked on prompts it was not trained on, and the table reports
the lengths it actually produced (from the generated ids, not from the targets).
"""

from __future__ import annotations

import json
import os
import random
import time

from benchmarks.common import OCR_WORDS, log, quiet

# one text of distinct words (each a single token of the tiny tokenizer): an answer of length L is its first L words
STORY = (
    "a red book cover shows tall man near blue car under dark sky while small dog sits beside green tree behind white house "
    "where yellow bus stops at long road sign next to wide window above wooden table holding cup plate food chair room wall "
    "floor door building city street water child woman person people cat object picture photo scene view frame background "
    "foreground circle square triangle rectangle star cross line dot ring oval diamond orange purple pink brown black gray "
    "cyan magenta gold silver bright light heavy round narrow little big large tiny short"
).split()
OCR_VQA = (  # SeVa's OCR-VQA questions, each with the answer length (words) the model is taught
    ("Who wrote this book?", 2),
    ("What is the title of this book?", 4),
    ("What is the genre of this book?", 1),
    ("Is this book related to Travel?", 1),
    ("Is this a comedy book?", 1),
    ("What type of book is this?", 2),
)
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."
# caption kinds: (kind word, caption length in words, weight in the prompt mix)
CAPTIONS = (
    ("terse", 5, 1.0),
    ("short", 8, 2.0),
    ("brief", 10, 3.0),
    ("plain", 12, 3.0),
    ("simple", 14, 3.0),
    ("clear", 16, 2.0),
    ("full", 20, 2.0),
    ("rich", 24, 1.0),
    ("vivid", 32, 1.0),
    ("detailed", 48, 0.5),
    ("thorough", 64, 0.5),
    ("exhaustive", 96, 0.5),
)
MAX_LENGTH = max(length for _, length, _ in CAPTIONS)
KIND_WORDS = [kind for kind, _, _ in CAPTIONS]


def answer_text(length: int) -> str:
    return " ".join(STORY[:length])


def natural_prompt(i: int, rng: random.Random) -> tuple[str, int]:
    """The ``i``-th prompt of the mix (half OCR-VQA, half captions) and the answer length taught for it."""
    if i % 2 == 0:
        text, length = OCR_VQA[rng.randrange(len(OCR_VQA))]
        return text + VQA_SUFFIX, length
    kind, length, _ = rng.choices(CAPTIONS, weights=[w for _, _, w in CAPTIONS])[0]
    words = ", ".join(rng.sample(OCR_WORDS, 3))
    return f"Provide a {kind} caption for the provided image.\nReference OCR token: {words}, {i}", length


def write_natural_prompts(path: str, images: list[str], count: int, seed: int = 0) -> list[int]:
    """A JSONL source of ``count`` prompts; returns the answer length (words) taught for each."""
    rng = random.Random(seed)
    lengths = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(count):
            text, length = natural_prompt(i, rng)
            lengths.append(length)
            fh.write(json.dumps({"id": f"n{i:06d}", "image": images[i % len(images)], "question": text}) + "\n")
    return lengths


def train_natural_model(out_dir: str, images: list[str], steps: int = 400, batch: int = 32, seed: int = 0, head_dim: int = 32) -> dict:
    """Build a tiny LLaVA twin in ``out_dir`` and teach it the answer lengths above (plain torch loop).

    Returns what was checked: the share of held-out prompts answered with exactly the taught
    number of words and the training time. Deterministic for a seed (one torch thread)."""
    import torch

    from seva_plugin.dev.tiny_models import build_tiny_llava
    from seva_plugin.interfaces import CLEAN
    from seva_plugin.pipeline.images import load_rgb
    from seva_plugin.pipeline.records import LoadedRecord, PromptRecord, with_image_markers
    from seva_plugin.plugins.backends.hf import HfBackend

    started = time.perf_counter()
    with quiet():
        build_tiny_llava(out_dir, seed=seed, head_dim=head_dim, vocab=[*STORY, *KIND_WORDS])
        backend = HfBackend(model=out_dir, template="llava", max_new_tokens=MAX_LENGTH + 8)
        renderer, model = backend.renderer, backend.hf_model
    tokenizer = renderer.tokenizer
    eos = tokenizer.eos_token_id
    pics = [load_rgb(p) for p in images[:8]]
    rng = random.Random(seed + 1)

    def example(i: int):
        text, length = natural_prompt(i, rng)
        record = LoadedRecord(PromptRecord(f"t{i}", with_image_markers(text, 1), ["x"]), [pics[i % len(pics)]], 0)
        return record, length

    def batch_tensors(items):
        records = [r for r, _ in items]
        ids, mm = renderer.view_inputs(records, CLEAN)
        rows, labels = [], []
        for prompt, (_, length) in zip(ids, items, strict=True):
            answer = renderer.answer_ids(answer_text(length)) + [eos]
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        width = max(map(len, rows))
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        label_ids = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return input_ids, mask, mm["pixel_values"], label_ids

    model.train()
    for param in model.parameters():  # loaded for inference (frozen): train every weight
        param.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    losses = []
    for step in range(steps):
        items = [example(step * batch + k) for k in range(batch)]
        input_ids, mask, pixels, labels = batch_tensors(items)
        loss = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            log(f"natural model: step {step}/{steps}, loss {loss.item():.4f}")
    model.eval()
    with quiet():
        model.save_pretrained(out_dir)
    seconds = time.perf_counter() - started
    return {"train_seconds": seconds, "final_loss": sum(losses[-20:]) / 20}


TRAINING = {"version": 1, "steps": 300, "batch": 32, "seed": 0, "head_dim": 32}


def natural_model(folder: str, images: list[str], steps: int) -> dict:
    """The taught model in ``folder``, trained once and kept (``natural.json`` records how)."""
    marker = os.path.join(folder, "natural.json")
    wanted = {**TRAINING, "steps": steps}
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as fh:
            done = json.load(fh)
        if {k: done.get(k) for k in wanted} == wanted:
            return done
    log(f"teaching a tiny LLaVA natural answer lengths ({steps} steps of {TRAINING['batch']}, plain torch loop)")
    info = {**wanted, **train_natural_model(folder, images, steps=steps, batch=TRAINING["batch"], seed=TRAINING["seed"], head_dim=TRAINING["head_dim"])}
    with open(marker, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    return info


def answer_lengths(data_file: str, tokenizer) -> list[tuple[int, int]]:
    """``(chosen, rejected)`` answer lengths in tokens, per record of a data file (sharegpt rows)."""
    out = []
    with open(data_file, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out.append(tuple(len(tokenizer.encode(row[k]["value"], add_special_tokens=False)) for k in ("chosen", "rejected")))
    return out
