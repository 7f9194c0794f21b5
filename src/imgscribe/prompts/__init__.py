"""Prompts from Ollama's Go templates: the TEMPLATE layer rendered as Ollama renders it.

``gotemplate`` is the Go text/template subset Ollama's templates use; ``chat`` builds the values
Ollama passes them (messages, or the legacy System/Prompt/Response turns) and the image tags.
"""

from .chat import ChatPrompt, chat_prompt, generate_prompt, render_chat, render_generate
from .gotemplate import Template, TemplateError

__all__ = ["ChatPrompt", "Template", "TemplateError", "chat_prompt", "generate_prompt", "render_chat", "render_generate"]
