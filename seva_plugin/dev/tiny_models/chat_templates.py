"""The chat templates the real checkpoints ship, as read (see ``shipped.py`` for which model uses which).

Kept verbatim: a twin's processor renders chat messages exactly as the real model's does, so code such
as the TRL writer's example can be tried on a twin as it would run on the real model.
"""

# llava-hf/llava-1.5-7b-hf chat_template.json (700 bytes, commit "Update chat_template.json to incorporate
# `generation` tag (#29)"), as copied by huggingface.co/FriendliAI/llava-1.5-7b-hf ("Duplicate from
# llava-hf/llava-1.5-7b-hf").
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

_QWEN_VISION = (
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
)
_QWEN_HEAD = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
)
_QWEN_TAIL = "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"

# huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/db8ce505bd3d523ac372f552648175c684c6f3f7/chat_template.json
# ("Update chat_template.json to incorporate `generation` tag", 1.28 kB).
QWEN2_VL_CHAT_TEMPLATE = (
    _QWEN_HEAD + "{% if message['content'] is string %}{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}"
    "{% endgeneration %}{% else %}{{ message['content'] }}{% endif %}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    + _QWEN_VISION
    + "{% elif 'text' in content %}{% if message['role'] == 'assistant' %}{% generation %}{{ content['text'] }}{% endgeneration %}"
    "{% else %}{{ content['text'] }}{% endif %}{% endif %}{% endfor %}" + _QWEN_TAIL
)

# Qwen/Qwen2.5-VL-7B-Instruct's chat template (the file itself could not be read here): Qwen2-VL's first
# template, without `generation` tags, as copied by models saved from Qwen2.5-VL (huggingface.co/GUI-Libra/
# GUI-Libra-3B chat_template.jinja, 1.02 kB) and by public code that names it Qwen2.5-VL's "official" one.
QWEN2_5_VL_CHAT_TEMPLATE = (
    _QWEN_HEAD
    + "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    + _QWEN_VISION
    + "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    + _QWEN_TAIL
)

# google/gemma-3-4b-it's tokenizer chat template as printed from the tokenizer by unsloth's chat_templates.py
# (gemma3_template); the same text is in Gemma 3 GGUF files. The official tokenizer_config.json could not be read here.
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\\n' }}
{%- endif -%}
"""
