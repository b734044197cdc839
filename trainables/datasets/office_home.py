"""``office_home``: Office-Home (Venkateswara et al., CVPR 2017), 65 classes in four domains as four tasks.

Art, Clipart, Product, Real_World (15,588 images); each domain is a task with
its own images (``multi_input``). Setting of Lin et al. (2022, Table 8). See
:mod:`trainables.datasets._office` and docs/data.md.
"""

from __future__ import annotations

from ._office import OfficeBenchmark
from .base import register


@register
class OfficeHome(OfficeBenchmark):
    name = "office_home"
    description = "Office-Home: 65-way classification in the Art, Clipart, Product, Real_World domains (multi-input; needs root)"
    tasks = ("Art", "Clipart", "Product", "Real_World")
    num_classes = 65
