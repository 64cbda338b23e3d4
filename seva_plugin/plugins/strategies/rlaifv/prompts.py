"""RLAIF-V's divide-and-conquer prompts and their parsing, carried over as data from the official code,
and the fallbacks this package adds.

Source: ``utils/llama3_8b_inference.py`` of ``github.com/RLHF-V/RLAIF-V`` (commit 83d917b):
``wrap_prompt_divide_to_list`` (split a question-answer pair into facts; the whole text cut to its
first 300 space-separated pieces), ``wrap_prompt_changeq_to_list`` (turn each fact into a general
question), ``get_facts`` (read the model's list back) and ``construct_question_yesno`` (the probe's
suffix). The official code runs them through two fine-tuned Llama-3 8B models; here the policy
itself answers them (self-feedback).
"""

from __future__ import annotations

import re

DIVIDE_PROMPT = (
    "You are an expert in extracting facts from the given question-answer pair for an image. Your task is to extract and rewrite the facts "
    "mentioned in the question-answer pair into self-contained sentences. Exclude opinions or subjective statements.\n\nYou should present "
    "your result in the following format:\n### Facts:\n- {Extracted fact 1}\n- {Extracted fact 2}\n- ...\n\n### Question-answer pair:\n"
    "Question: "
)
DIVIDE_WORDS = 300  # official: ' '.join(content.split(' ')[:300])

TO_QUESTION_PROMPT = (
    "You are an expert at modifying a given declarative sentence into a general question sentence. Your task is to modify the given "
    "declarative sentences one by one into a general question form. Do not change tenses or add extra content.\n    If the given declarative "
    "sentence contains not, no or negative meaning words, you need to check the modified general interrogative sentence to make sure that the "
    "generated general question sentence retains words with not , no or negative meaning words.\n\nYou should present your result in the "
    "following format:\n### Modified sentences:\n- {Modified sentence 1}\n- {Modified sentence 2}\n- ...\n\n### Declarative sentences:"
)

PROBE_SUFFIX = " Please answer yes or no."  # official construct_question_yesno: f'{changed_fact} Please answer yes or no.'

# Ours (no official counterpart): the question a claim becomes with `questions: template`.
TEMPLATE_QUESTION = 'Is the following statement about the image true? "{claim}"'


def divide_prompt(question: str, answer: str) -> str:
    """The official claim-splitting prompt for one question-answer pair, cut to 300 space-separated pieces."""
    content = DIVIDE_PROMPT + question + "\nAnswer: " + answer
    return " ".join(content.split(" ")[:DIVIDE_WORDS])


def to_question_prompt(claims: list[str]) -> str:
    """The official claim-to-question prompt for one answer's claims."""
    return TO_QUESTION_PROMPT + "".join(f"\n- {claim}\n" for claim in claims)


def parse_list(result: str) -> list[str]:
    """The official ``get_facts``: each non-empty line without ``###``, its first character (the
    ``-`` bullet) dropped, stripped. Lines left empty are dropped too (the official code keeps them
    and later refuses the answer's pairs for it)."""
    items = []
    for line in result.strip().split("\n"):
        if line == "" or "###" in line:
            continue
        item = line[1:].strip()
        if item:
            items.append(item)
    return items


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(answer: str) -> list[str]:
    """``claims: sentences``: the answer's sentences (split after ``.``, ``!`` or ``?`` and at line
    breaks), as a cheaper stand-in for model-made claims."""
    return [s.strip() for s in _SENTENCE_END.split(answer) if s.strip()]


def template_question(claim: str) -> str:
    return TEMPLATE_QUESTION.format(claim=claim)


def probe(question: str) -> str:
    """The yes/no probe the labeler answers: the general question and the official suffix."""
    return question + PROBE_SUFFIX
