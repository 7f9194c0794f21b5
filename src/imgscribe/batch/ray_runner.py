"""The same job on Ray Data, for when one machine is not enough.

::

    driver: expand sources, open the manifest ──► ray.data.from_items(paths)
        ──► map_batches(RayDescriber, ActorPoolStrategy(size=actors))  each actor: one loaded model
            (or clients of remote servers) running the local pipeline over its batch
        ──► records stream back ──► the driver's Sink: sidecars/XMP, manifest, outputs

Every actor runs :func:`~imgscribe.batch.runner.pipeline` with the same :class:`Describer` as a
local run, and the driver commits with the same :class:`~imgscribe.batch.job.Sink`, so the records,
outputs and resume semantics are those of a local run. Images are read where the actor runs:
on a cluster the paths (and the model store) must be on storage every node sees.

An actor makes its clients from recipes the driver hands it (:meth:`Client.recipe`: the servers'
URLs and key, or the models folder and the scheduler's knobs), never from the driver's environment.

Without an address this starts a private local Ray instance (and stops it at the end); with
``--ray-address`` or ``RAY_ADDRESS`` it joins that cluster. Actors get fractional CPUs by default
so that they never take every CPU slot (Ray then starves its own tasks and hangs silently:
ray-project/ray#44687).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..client import Client, LocalClient, LocalRecipe, Recipe
from ..config import settings
from ..errors import ImgscribeError
from ..scheduler import process_settings
from .records import Describer, Index, Spec, display_path
from .runner import default_parallel, pipeline
from .sources import Url, is_url

DEFAULT_BATCH = 16
LOCAL_OBJECT_STORE = 512 * 1024**2


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImgscribeError("--ray needs Ray Data: pip install 'imgscribe[ray]'") from None
    return ray


def connect(address: str | None) -> bool:
    """Join ``address`` (or ``RAY_ADDRESS``), or start a private local instance; True when this
    call started or joined (and so should shut down), False when Ray was already initialised."""
    ray = _ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray's own environment: no telemetry
    address = address or settings().ray_address
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=LOCAL_OBJECT_STORE)  # fmt: skip
    return True


def actor_recipes(clients: list[Client], servers: bool) -> list[Recipe]:
    """What the actors make their clients from: the same servers (``servers``: ``--host`` named
    them), else a scheduler of their own over the driver's models folder that keeps the model
    loaded for the whole run (this client's folder and knobs, or the settings' when the driver
    asks a server that ``--host`` did not name)."""
    if servers:
        return [c.recipe() for c in clients]
    if isinstance(clients[0], LocalClient):
        local = clients[0].recipe()
    else:
        cfg = process_settings()  # the environment's, with --force
        local = LocalRecipe(cfg.models_dir, None, cfg.max_loaded_models, cfg.num_parallel, cfg.max_queue,
                            cfg.ignore_memory)  # fmt: skip
    return [replace(local, keep_alive=math.inf)]


def ray_pipeline(
    work: list[Path | Url],
    spec: Spec,
    index: Index,
    recipes: list[Recipe],
    *,
    parallel: int | None = None,
    address: str | None = None,
    actors: int = 1,
    cpus: float | None = None,
    gpus: float = 0,
    batch_size: int = DEFAULT_BATCH,
) -> Iterator[dict[str, Any]]:
    """Records for ``work`` from an actor pool, as they finish (a generator: shuts Ray down at the end)."""
    ray = _ray()
    started = connect(address)
    try:
        if not work:
            return
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # our progress and summary instead
        ray.data.DataContext.get_current().enable_progress_bars = False
        total = ray.cluster_resources().get("CPU", 1.0)
        if cpus is None:  # never every CPU slot: the read/scheduling tasks need one (see module doc)
            cpus = min(1.0, max(0.1, (total - 1) / actors)) if total > 1 else 0.5
        rows = [{"ref": item.url if isinstance(item, Url) else os.path.abspath(item), "path": display_path(item)}
                for item in work]  # fmt: skip
        blocks = max(1, min(math.ceil(len(rows) / batch_size), 1000))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        ds = ds.map_batches(
            RayDescriber,
            fn_constructor_kwargs={
                "spec": spec,
                "index": Index(set(index.ids), set(index.keys), dict(index.aliases or {})),
                "recipes": list(recipes),
                "parallel": parallel,
            },
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus or None,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["record"]:
                yield json.loads(text)
    finally:
        if started:
            ray.shutdown()


class RayDescriber:
    """A Ray Data actor: loads the model once (or connects to servers), then describes batches."""

    def __init__(self, spec: Spec, index: Index, recipes: list[Recipe], parallel: int | None):
        clients = [recipe.open() for recipe in recipes]
        default = default_parallel(clients, spec.model)
        self.parallel = parallel or default
        self.chats = [c.chat for c in clients]
        self.describer = Describer(spec, index)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        items = [(Url(ref) if is_url(ref) else Path(ref), path) for ref, path in zip(batch["ref"], batch["path"])]
        records = list(pipeline(items, self.describer, self.chats, parallel=self.parallel,
                                read_ahead=max(2, self.parallel), readers=2))  # fmt: skip
        return {"record": np.array([json.dumps(r, ensure_ascii=False) for r in records], dtype=object)}
