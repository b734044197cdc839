"""``office31``: Office-31 (Saenko et al., ECCV 2010), 31 classes in three domains as three tasks.

amazon (2,817 images), dslr (498), webcam (795); each domain is a task with
its own images (``multi_input``). Setting of Lin et al. (2022, Table 8). See
:mod:`trainables.datasets._office` and docs/data.md.
"""

from __future__ import annotations

from ._office import OfficeBenchmark
from .base import register


@register
class Office31(OfficeBenchmark):
    name = "office31"
    description = "Office-31: 31-way classification in the amazon, dslr, webcam domains (multi-input; needs root)"
    tasks = ("amazon", "dslr", "webcam")
    num_classes = 31
