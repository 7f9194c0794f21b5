"""Describing many images: sources, prompts, a resumable manifest, writers, and two runners (a
local pipeline, and Ray Data for more than one machine). See docs/batch.md.

    from imgscribe.batch import Job, Prompt, execute
    from imgscribe.client import connect
    stats, _ = execute(Job(sources=["photos/"], model="builtin", prompts=[Prompt("response", "Describe.")],
                           outputs=["captions.parquet"]), [connect()])
"""

from .job import Job, Stats, execute
from .prompts import Prompt, load_prompt_file

__all__ = ["Job", "Prompt", "Stats", "execute", "load_prompt_file"]
