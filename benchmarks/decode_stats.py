"""Decode-slot accounting for ``model.generate``: how much of a static batch's work went to rows that had ended."""

from __future__ import annotations


def forced_stops(lengths: list[int], eos: int, width: int):
    """A logits processor: row i may not end before ``lengths[i]`` tokens and ends right there."""
    import torch
    from transformers import LogitsProcessor

    class ForcedStops(LogitsProcessor):
        def __init__(self):
            self.lengths = None

        def __call__(self, input_ids, scores):
            if self.lengths is None:
                self.lengths = torch.tensor(lengths, device=scores.device)
            early = (self.lengths > input_ids.shape[1] - width)[:, None]  # no host sync: torch.where, not masks
            banned = scores.clone()
            banned[:, eos] = float("-inf")
            forced = torch.full_like(scores, float("-inf"))
            forced[:, eos] = 0.0
            return torch.where(early, banned, forced)

    return ForcedStops()


class Recorder:
    """Wraps ``model.generate`` (an instance attribute over the class's method, removed on exit) and keeps
    each call's new ids, for the share of decode slots spent on rows that had already ended: a call
    decodes rows x steps slots, and a row needs its tokens up to and including its end-of-sequence
    token. ``stop_lengths(input_ids, attention_mask)``, when given, forces each row to end after
    that many tokens (emulated natural lengths for random weights)."""

    def __init__(self, model, eos: int, stop_lengths=None):
        self.model, self.eos, self.stop_lengths = model, eos, stop_lengths
        self.calls: list = []
        self.calls_cpu: list = []
        self.original = model.generate

    def __enter__(self):
        from transformers import LogitsProcessorList

        def generate(*args, **kwargs):
            width = kwargs["input_ids"].shape[1]
            if self.stop_lengths is not None:
                lengths = self.stop_lengths(kwargs["input_ids"], kwargs["attention_mask"])
                processors = kwargs.pop("logits_processor", None) or LogitsProcessorList()
                processors.append(forced_stops(lengths, self.eos, width))
                kwargs["logits_processor"] = processors
            out = self.original(*args, **kwargs)
            self.calls.append(out[:, width:])
            return out

        self.model.generate = generate
        return self

    def __exit__(self, *exc):
        del self.model.generate  # the class's method again
        self.calls_cpu = [c.cpu() for c in self.calls]
        self.calls = []

    def stats(self) -> dict:
        """rows, generate calls, decode slots (rows x steps), answer tokens (end-of-sequence tokens not
        counted), the longest answer, and ``wasted``: the share of slots after a row's end."""
        rows = slots = useful = ended = longest = 0
        for new in self.calls_cpu:
            n, steps = new.shape
            rows += n
            slots += n * steps
            for row in new.tolist():
                end = row.index(self.eos) + 1 if self.eos in row else steps
                useful += end
                ended += self.eos in row
                longest = max(longest, end - (self.eos in row))
        return {
            "rows": rows,
            "calls": len(self.calls_cpu),
            "decode_slots": slots,
            "answer_tokens": useful - ended,
            "longest": longest,
            "wasted": (slots - useful) / slots if slots else 0.0,
        }
