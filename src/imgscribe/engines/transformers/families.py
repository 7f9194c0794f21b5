"""The families the transformers engine runs. Checkpoint-folder knowledge lives in
:mod:`imgscribe.formats.checkpoints` (the store reads it too); its names are here for the engine."""

from ...formats.checkpoints import (
    CAUSAL_LM,
    FAMILIES,
    IMAGE_TEXT_TO_TEXT,
    WEIGHT_SUFFIXES,
    Family,
    context_length,
    detect,
    digest,
    families_of,
    folder_size,
    format_parameters,
    read_config,
    safetensors_header,
    supported_architectures,
    text_config,
    weight_files,
    weights_facts,
)

__all__ = [
    "CAUSAL_LM", "FAMILIES", "IMAGE_TEXT_TO_TEXT", "WEIGHT_SUFFIXES", "Family", "context_length", "detect", "digest",
    "families_of", "folder_size", "format_parameters", "read_config", "safetensors_header",
    "supported_architectures", "text_config", "weight_files", "weights_facts",
]  # fmt: skip
