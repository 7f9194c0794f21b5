"""How many llama-server slots a model can have in the memory free now (issue 19).

Each slot holds ``num_ctx`` tokens of KV cache for as long as the model is loaded (llama-server
runs ``-c num_ctx x slots``). The memory check before a load (:func:`imgscribe.memory.check_manifest`)
counts one slot; here each slot more must fit too: the largest ``n`` up to what is offered
(:data:`~imgscribe.config.PARALLEL_WHEN_UNSET`) whose KV cache of ``n - 1`` slots more (the
GGUF's layers and heads, as ``budget.py`` counts a raised context) fits the RAM budget
(:func:`imgscribe.memory.ram_budget` of the RAM available) left over by the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ... import hardware
from ...config import PARALLEL_WHEN_UNSET, settings
from ...memory import estimate_manifest, gb, ram_budget
from ...types import ModelManifest
from .budget import kv_bytes
from .options import DEFAULT_CTX, int_option

__all__ = ["SlotFit", "fit_slots"]


@dataclass(frozen=True)
class SlotFit:
    """The slots chosen, of those offered, and why."""

    slots: int
    offered: int
    per_slot: int = 0  # bytes of KV cache one more slot holds
    room: int | None = None  # bytes the extra slots could use; None: not checked

    @property
    def limited(self) -> bool:
        return self.slots < self.offered

    def reason(self) -> str:
        """Why fewer than offered, in words ('' when all of them)."""
        if not self.limited:
            return ""
        if self.room is None:
            return "the memory free is unknown"
        return (f"the memory free holds the KV cache of {self.slots} of {self.offered} "
                f"({gb(self.per_slot)} a slot, {gb(max(self.room, 0))} to spare)")  # fmt: skip


def fit_slots(manifest: ModelManifest, offered: int = PARALLEL_WHEN_UNSET, available: int | None = None) -> SlotFit:
    """The most slots, up to ``offered``, whose KV cache fits beside the model in ``available``
    bytes of RAM (default: what is available now); all of them when the memory check is off
    (``IMGSCRIBE_IGNORE_MEMORY``, ``--force``), one when the memory free is unknown."""
    offered = max(1, offered)
    if settings().ignore_memory or offered == 1:
        return SlotFit(offered, offered)
    model = Path(manifest.files.get("model") or "")
    if not model.is_file():
        return SlotFit(1, offered)  # the load says what is missing
    ctx = int_option(manifest, "num_ctx") or DEFAULT_CTX
    one = kv_bytes(model, ctx)
    per_slot = kv_bytes(model, 2 * ctx) - one
    if available is None:
        available = hardware.probe_ram()[1]
    if not available:
        return SlotFit(1, offered, per_slot)
    estimate = estimate_manifest(manifest)
    room = ram_budget(available) - (estimate.total if estimate is not None else 0)
    slots = 1
    for n in range(2, offered + 1):
        if kv_bytes(model, n * ctx) - one > room:
            break
        slots = n
    return SlotFit(slots, offered, per_slot, room)
