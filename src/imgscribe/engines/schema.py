"""A ``format`` JSON schema compiled by llguidance, the grammar engine both local engines rely on:
transformers decodes with the grammar itself; for llama-server it is the check that a schema can be
honoured (llama-server quietly drops what it cannot convert and answers unconstrained)."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest, Unsupported


def compile_json_schema(schema: dict[str, Any], tokenizer: Any = None, defaults: dict[str, Any] | None = None) -> str:
    """llguidance's grammar for ``schema`` (checked against ``tokenizer`` when given); InvalidRequest
    when the schema cannot be compiled."""
    try:
        import llguidance
    except ImportError as exc:
        raise Unsupported("structured output (format) needs the llguidance package: pip install llguidance") from exc
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=defaults)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"invalid JSON schema in format: {exc}") from None
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
    if is_error:
        raise InvalidRequest(f"unsupported JSON schema in format: {'; '.join(messages)}")
    return grammar
