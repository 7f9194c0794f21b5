"""Prompts from Ollama's Go templates: the TEMPLATE layer rendered as Ollama renders it.

``gotemplate`` is the Go text/template subset Ollama's templates use; ``chat`` builds the values
Ollama passes them (messages, or the legacy System/Prompt/Response turns) and the image tags.
"""

from .gotemplate import Template, TemplateError

__all__ = ["Template", "TemplateError"]
