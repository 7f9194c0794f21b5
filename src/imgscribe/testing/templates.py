"""Chat templates of the real checkpoints, so that tiny models format prompts as the real ones do.

Sources: the llava-hf LLaVA-1.5 and LLaVA-1.6 (Mistral) templates; xtuner's llava-llama3 and
llava-phi3 (Llama 3 and Phi-3 chat formats with ``<image>``); the llava-hf LLaVA-OneVision (Qwen 2)
template; Qwen2-VL-Instruct; Gemma 3 instruction-tuned; Mistral-Small-3.2-24B-Instruct-2506
(verbatim, used by Mistral 3 and Pixtral); Llama 4 (the one transformers ships in its Llama 4
processor, read at build time); Phi-4-multimodal-instruct; Janus-Pro (the format transformers'
Janus tests assert); SmolVLM-Instruct / Idefics3.
"""

# fmt: off
LLAVA_15 = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

LLAVA_LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] | trim }}{% endfor %}{% endif %}"
    "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

LLAVA_PHI3 = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}{% endif %}"
    "{{ '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

LLAVA_NEXT_MISTRAL = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}{{' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '<\\s> '}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

LLAVA_ONEVISION = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN2_VL = """{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system
You are a helpful assistant.<|im_end|>
{% endif %}<|im_start|>{{ message['role'] }}
{% if message['content'] is string %}{{ message['content'] }}<|im_end|>
{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

GEMMA3 = "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"

PHI4_MM = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<|image|>' }}{% elif content['type'] == 'audio' %}{{ '<|audio|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)

JANUS = (
    "{%- for message in messages -%}"
    "{%- if message['role']|lower == 'system' -%}{%- for content in message['content'] -%}{{ content['text'] }}{%- endfor -%}{{ '\n\n' }}"
    "{%- elif message['role']|lower == 'user' -%}<|User|>: {% elif message['role']|lower == 'assistant' -%}<|Assistant|>:"
    "{%- if not (loop.last and not add_generation_prompt and message['content'][0]['text'] == '') %} {% endif -%}{%- endif -%}"
    "{%- if message['role']|lower != 'system' -%}{%- for content in message['content'] -%}{%- if not loop.first -%}{{ '\n' }}{%- endif -%}"
    "{%- if content['type'] == 'image' -%}<image_placeholder>{%- elif content['type'] == 'text' -%}{{ content['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- if message['role']|lower == 'user' -%}{{ '\n\n' }}{%- elif message['role']|lower == 'assistant' -%}<｜end▁of▁sentence｜>{%- endif -%}"
    "{%- endfor -%}{%- if add_generation_prompt -%}<|Assistant|>:{%- endif -%}"
)

IDEFICS3 = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# fmt: on


def llama4() -> str:
    """The Llama 4 template that transformers ships with its Llama 4 processor."""
    from transformers.models.llama4.processing_llama4 import chat_template

    return chat_template


#: Mistral-Small-3.2-24B-Instruct-2506, verbatim (Mistral 3 and Pixtral).
MISTRAL_SMALL_3_2 = '{%- set today = strftime_now("%Y-%m-%d") %}\n{%- set default_system_message = "You are Mistral Small 3, a Large Language Model (LLM) created by Mistral AI, a French startup headquartered in Paris.\\nYour knowledge base was last updated on 2023-10-01. The current date is " + today + ".\\n\\nWhen you\'re not sure about some information or when the user\'s request requires up-to-date or specific data, you must use the available tools to fetch the information. Do not hesitate to use tools whenever they can provide a more accurate or complete response. If no relevant tools are available, then clearly state that you don\'t have the information and avoid making up anything.\n\nIf the user\'s question is not clear, ambiguous, or does not provide enough context for you to accurately answer the question, you do not try to answer it right away and you rather ask the user to clarify their request (e.g. \\"What are some good restaurants around me?\\" => \\"Where are you?\\" or \\"When is the next flight to Tokyo\\" => \\"Where do you travel from?\\").\nYou are always very attentive to dates, and when asked about information at specific dates, you discard information that is at another date.\nYou follow these instructions in all languages, and always respond to the user in the language they use or request.\nNext sections describe the capabilities that you have.\n\n# WEB BROWSING INSTRUCTIONS\n\nYou cannot perform any web search or access internet to open URLs, links etc. If it seems like the user is expecting you to do so, you clarify the situation and ask the user to copy paste the text directly in the chat.\n\n# MULTI-MODAL INSTRUCTIONS\n\nYou have the ability to read images, but you cannot generate images. You also cannot transcribe audio files or videos.\nYou cannot read nor transcribe audio files or videos.\n\n# TOOL CALLING INSTRUCTIONS\n\nYou may have access to tools that you can use to fetch information or perform actions. You must use these tools in the following situations:\n\n1. When the request requires up-to-date information.\n2. When the request requires specific data that you do not have in your knowledge base.\n3. When the request involves actions that you cannot perform without tools.\n\nAlways prioritize using tools to provide the most accurate and helpful response. If tools are not available, inform the user that you cannot perform the requested action at the moment." %}\n\n{{- bos_token }}\n\n{%- set system_prompt = default_system_message %}\n{%- set loop_messages = messages %}\n\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{%- if messages|length > 0 and messages[0][\'role\'] == \'system\' %}\n    {%- if messages[0][\'content\'] is string %}\n        {%- set system_prompt = messages[0][\'content\'] %}\n    {%- else %}\n        {%- set system_prompt = messages[0][\'content\'][0][\'text\'] %}\n    {%- endif %}\n    {%- set loop_messages = messages[1:] %}\n{%- endif %}\n\n{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}\n\n{%- set ns = namespace(index=0) %}\n{%- for message in loop_messages %}\n    {%- if not (message.role == "tool" or (message.get(\'tool_calls\'))) %}\n        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}\n            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}\n        {%- endif %}\n        {%- set ns.index = ns.index + 1 %}\n    {%- endif %}\n{%- endfor %}\n\n{{- \'[SYSTEM_PROMPT]\' + system_prompt + \'[/SYSTEM_PROMPT]\' }}\n\n{%- for message in loop_messages %}\n    {%- if message[\'role\'] == \'system\' %}\n        {%- if message[\'content\'] is string %}\n            {{- \'[SYSTEM_PROMPT]\' + message[\'content\'] + \'[/SYSTEM_PROMPT]\' }}\n        {%- else %}\n            {{- \'[SYSTEM_PROMPT]\' + message[\'content\'][0][\'text\'] + \'[/SYSTEM_PROMPT]\' }}\n        {%- endif %}\n    {%- elif message[\'role\'] == \'user\' %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n            {{- \'[AVAILABLE_TOOLS]\' + tools|tojson + \'[/AVAILABLE_TOOLS]\' }}\n        {%- endif %}\n        {{- \'[INST]\' }}\n        {%- if message[\'content\'] is string %}\n            {{- message[\'content\'] }}\n        {%- else %}\n            {%- for block in message[\'content\'] %}\n                {%- if block[\'type\'] == \'text\' %}\n                    {{- block[\'text\'] }}\n                {%- elif block[\'type\'] in [\'image\', \'image_url\'] %}\n                    {{- \'[IMG]\' }}\n                {%- else %}\n                    {{- raise_exception(\'Only text and image blocks are supported in message content!\') }}\n                {%- endif %}\n            {%- endfor %}\n        {%- endif %}\n        {{- \'[/INST]\' }}\n    {%- elif message[\'role\'] == \'assistant\' %}\n        {%- if message.get(\'tool_calls\') %}\n            {%- for tool_call in message.tool_calls %}\n                {{- \'[TOOL_CALLS]\' + tool_call.function.name }}\n                {%- if not tool_call.id is defined or tool_call.id is not string or tool_call.id|length != 9 %}\n                    {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}\n                {%- endif %}\n                {{- \'[CALL_ID]\' + tool_call.id }}\n                {{- \'[ARGS]\' + tool_call[\'function\'][\'arguments\']|tojson }}\n            {%- endfor %}\n            {{- eos_token }}\n        {%- elif message[\'content\'] is string %}\n            {{- message[\'content\'] + eos_token }}\n        {%- else %}\n            {%- for block in message[\'content\'] %}\n                {%- if block[\'type\'] == \'text\' %}\n                    {{- block[\'text\'] }}\n                {%- elif block[\'type\'] in [\'image\', \'image_url\'] %}\n                    {{- \'[IMG]\' }}\n                {%- else %}\n                    {{- raise_exception(\'Only text and image blocks are supported in assistant content!\') }}\n                {%- endif %}\n            {%- endfor %}\n            {{- eos_token }}\n        {%- endif %}\n    {%- elif message[\'role\'] == \'tool_results\' or message[\'role\'] == \'tool\' %}\n        {%- if message.content is defined and message.content.content is defined %}\n            {%- set content = message.content.content %}\n        {%- else %}\n            {%- set content = message.content %}\n        {%- endif %}\n        {%- if not message.tool_call_id is defined or message.tool_call_id is not string or message[\'tool_call_id\']|length != 9 %}\n            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}\n        {%- endif %}\n        {{- \'[TOOL_RESULTS]\' + message.tool_call_id + \'[TOOL_CONTENT]\' + content|string + \'[/TOOL_RESULTS]\' }}\n    {%- else %}\n        {{- raise_exception(\'Only system, user, assistant, and tool roles are supported!\') }}\n    {%- endif %}\n{%- endfor %}\n'  # noqa: E501
