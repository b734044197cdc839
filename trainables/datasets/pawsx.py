"""``pawsx``: PAWS-X paraphrase identification (Yang et al., EMNLP 2019) in XTREME (Hu et al., 2020), one
task per language (en, zh, de, es by default), each with its own sentence pairs.

Files ``{root}/{train,dev,test}-{lang}.tsv``: tab-separated ``id``,
``sentence1``, ``sentence2``, ``label`` (0/1), with or without a header row
(a three-column form without ``id`` is accepted too). Setting of Lin et al.
(2022, Table 2): mBERT shared encoder, a linear layer on the [CLS] token per
language, cross-entropy, Adam 2e-5, batch 32, max length 128; accuracy.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch import Tensor, nn

from ..metrics import Accumulator, Accuracy
from ._text import FirstToken, TextBenchmark, pack, tokenizer
from .base import Defaults, Option, Splits, TensorSplit, register


def read_pawsx(path: Path) -> tuple[list[str], list[str], list[int]]:
    """Sentence pairs and labels of one PAWS-X TSV file (validated)."""
    s1, s2, labels = [], [], []
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    start, cols = 0, None
    if rows and "sentence1" in rows[0]:
        header = rows[0]
        try:
            cols = (header.index("sentence1"), header.index("sentence2"), header.index("label"))
        except ValueError:
            raise ValueError(f"{path}, line 1: header {header} lacks sentence1, sentence2 or label") from None
        start = 1
    for n, row in enumerate(rows[start:], start=start + 1):
        if not row or row == [""]:
            continue
        if cols is not None:
            if len(row) <= max(cols):
                raise ValueError(f"{path}, line {n}: expected {len(rows[0])} tab-separated fields, got {len(row)}")
            a, b, y = (row[c] for c in cols)
        elif len(row) == 4:
            _, a, b, y = row
        elif len(row) == 3:
            a, b, y = row
        else:
            raise ValueError(f"{path}, line {n}: expected 'id, sentence1, sentence2, label' separated by tabs, "
                             f"got {len(row)} fields")
        if y.strip() not in ("0", "1"):
            raise ValueError(f"{path}, line {n}: label {y!r}, expected 0 or 1")
        s1.append(a)
        s2.append(b)
        labels.append(int(y))
    if not labels:
        raise ValueError(f"{path} holds no sentence pair")
    return s1, s2, labels


@register
class PAWSX(TextBenchmark):
    name = "pawsx"
    description = "PAWS-X paraphrase identification, one task per language (multi-input; needs root and an encoder)"
    all_languages = ("en", "zh", "de", "es")
    tasks = all_languages
    suffix = ".tsv"
    options = TextBenchmark.common_options + (Option("languages", list(all_languages), "languages (tasks)"),)
    defaults = Defaults(epochs=10, batch_size=32, lr=2e-5, optimizer="adam")

    def load(self) -> Splits:
        tok = tokenizer(self.opts["model"])
        out: dict[str, dict[str, TensorSplit]] = {s: {} for s in self.splits_files}
        for lang in self.tasks:
            for split, prefix in self.splits_files.items():
                a, b, y = read_pawsx(self.root / f"{prefix}-{lang}.tsv")
                enc = tok(a, b, truncation=True, max_length=self.opts["max_length"], padding="max_length")
                out[split][lang] = TensorSplit(pack(enc), {lang: torch.tensor(y, dtype=torch.int64)})
        return Splits(**out)

    def head(self, task: str) -> nn.Module:
        return nn.Sequential(FirstToken(), nn.Dropout(0.1), nn.Linear(self.hidden_size(), 2))

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred, target)

    def accumulators(self) -> dict[str, Accumulator]:
        return {t: Accuracy() for t in self.tasks}
