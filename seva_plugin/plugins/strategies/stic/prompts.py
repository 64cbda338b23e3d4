"""STIC's prompts, carried over as data from the official code.

Source: ``stic/generate_pref.py`` of ``github.com/yihedeng9/STIC`` (commit 993734e): ``prompt_list``
(the description prompts a pair is trained on, also those the corrupted image is described with),
``full_prompt`` (the step-by-step prompt whose answer on the clean image is chosen) and
``hallu_prompt_list`` (the prompts that elicit the "hallucinated" rejected answer). The texts are
byte for byte the official ones: ``full_prompt`` is a triple-quoted string in indented code, so its
lines after the first start with four spaces and three of them end with a space.
"""

from __future__ import annotations

DESCRIPTION_PROMPTS: tuple[str, ...] = (
    "Illustrate the details of the picture.",
    "Summarize the visual content presented.",
    "Explain what is depicted in the photograph.",
    "Outline the key elements captured in the image.",
    "Detail the composition and subjects within the frame.",
    "Convey the atmosphere and mood represented in the snapshot.",
    "Interpret the scene shown in the image.",
    "Identify and describe the main focal points in the visual.",
)

DETAILED_PROMPT = (
    "Please provide a detailed description of the image, focusing on the following. \n"
    "    Identify the main subjects (people, animals, objects) in the image and describe what they are doing.\n"
    "    Describe the setting of the image. Is it indoors or outdoors? What kind of environment or location does it depict? \n"
    "    What mood does the image convey? Are there any specific elements (such as lighting, weather, expressions) that contribute to this atmosphere? \n"
    "    Describe the dominant colors and the overall composition. How do these elements affect the image's impact?\n"
    "    Point out any details or symbols that might be relevant to understanding the image's meaning or context.\n"
    "    If applicable, provide interpretations of what the image might represent or communicate."
)

HALLUCINATION_PROMPTS: tuple[str, ...] = (
    "Describe the image with imaginative objects that may exist in the scene.",
    "Enrich the description by adding hypothetical objects or characters that could be part of the scene.",
    "Suggest and detail practical items or people that could logically inhabit the image's setting.",
    "Incorporate elements that, though absent, would seamlessly fit into the context of the picture.",
    "Imagine and describe additional everyday objects or activities taking place just out of frame.",
    "Augment the scene with details of potential events or items that are plausible.",
    "Conceive of and detail natural elements, such as weather or animals, that could realistically enter the scene. Make the description affirmative.",
    "Invent and incorporate details of practical tools, vehicles, or gadgets that could be expected in a similar scenario.",
)

# stic/add_des_to_data.py: the description is infused into the first human turn of an instruction.
DESCRIPTION_HEADER = "Image description:\n"
