"""Chat templates supplied for models whose files carry none.

Templates are Jinja strings in the format transformers' ``apply_chat_template`` renders; they are
module constants so they can be tested without loading a model.
"""

from __future__ import annotations

#: Gemma's turn format (as in the official Gemma 2/3 instruct templates):
#:
#:     <bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n
#:
#: A leading system message is prepended to the first user turn, separated by a blank line
#: (Gemma has no system role). ``assistant`` is rendered as Gemma's ``model`` role. Content is
#: trimmed like the official template does, and may be a string or a list of ``{"type": "text"}``
#: parts. Roles must alternate user/assistant after the optional system message.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] | trim }}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

#: Templates keyed by a transformers ``config.model_type`` prefix, used as a last resort for a
#: local folder or hub model whose tokenizer has no template (e.g. a Gemma base checkpoint).
FAMILY_CHAT_TEMPLATES: dict[str, str] = {
    "gemma": GEMMA_CHAT_TEMPLATE,
}


def family_chat_template(model_type: str | None) -> str | None:
    """The template of the family a ``config.model_type`` belongs to, or ``None`` if unknown."""
    if not model_type:
        return None
    for prefix, template in FAMILY_CHAT_TEMPLATES.items():
        if model_type.startswith(prefix):
            return template
    return None
