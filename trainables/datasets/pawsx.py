"""``pawsx``: PAWS-X paraphrase identification (Yang et al., EMNLP 2019) in XTREME (Hu et al., 2020), one
task per language (en, zh, de, es by default), each with its own sentence pairs.

Files ``{root}/{train,dev,test}-{lang}.tsv``, each in one of the two published forms, told apart by the first
line:

- the PAWS-X release (``x-final/{lang}/*.tsv``): the header
  ``id<TAB>sentence1<TAB>sentence2<TAB>label``, four tab-separated fields per
  row, no quoting (a ``"`` is a character of the sentence);
- XTREME's processed files (``download_data.sh`` -> ``utils_preprocess.py``,
  written by Python's ``csv.writer``): no header, ``sentence1``,
  ``sentence2``, ``label``, CRLF line ends, and a field holding ``"`` wrapped
  in quotes with the inner quotes doubled, which is undone here. XTREME's test
  files have two fields (the labels are withheld): refused, naming the
  release file to use instead.

Setting of Lin et al. (2022, Table 2): mBERT shared encoder, a linear layer on
the [CLS] token per language, cross-entropy, Adam 2e-5, batch 32, max length
128; accuracy.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from litmus.errors import DataError

from ..metrics import Accumulator, Accuracy
from ._text import FirstToken, TextBenchmark, pack, read_lines
from .base import Option, TensorSplit, register

HEADER = ("id", "sentence1", "sentence2", "label")
#: the PAWS-X release's file of each split (``x-final/{lang}/...``; English has the human ``train.tsv``)
RELEASE_FILE = {"train": "translated_train.tsv", "dev": "dev_2k.tsv", "test": "test_2k.tsv"}
Pairs = tuple[list[str], list[str], list[int]]


def release_file(path: Path) -> str:
    """The PAWS-X release file that holds the labelled data of ``{split}-{lang}.tsv``."""
    split, _, lang = path.stem.partition("-")
    name = "train.tsv" if (split, lang) == ("train", "en") else RELEASE_FILE.get(split, f"{split}.tsv")
    return f"x-final/{lang or '<lang>'}/{name}"


def unlabeled_message(path: Path) -> str:
    return (f"{path} holds sentence pairs without labels (2 fields per row): the labels are absent "
            f"(XTREME withholds its test labels); use the PAWS-X release's {release_file(path)} as {path.name}")


def _label(path: Path, n: int, value: str) -> int:
    if value.strip() == "":
        raise DataError(f"{path}, line {n}: the label is missing, expected 0 or 1")
    if value.strip() not in ("0", "1"):
        raise DataError(f"{path}, line {n}: label {value!r}, expected 0 or 1")
    return int(value)


def is_release_header(line: str) -> bool:
    return tuple(f.strip() for f in line.split("\t")) == HEADER


def read_release(path: Path, lines: list[str]) -> Pairs:
    """The PAWS-X release form: header, then ``id, sentence1, sentence2, label`` rows, no quoting."""
    s1, s2, labels = [], [], []
    for n, line in enumerate(lines[1:], start=2):
        if line == "":
            continue
        row = line.split("\t")
        if len(row) == 3:
            raise DataError(f"{path}, line {n}: the label is missing (3 fields; expected 4 tab-separated fields "
                            "id, sentence1, sentence2, label as the header says)")
        if len(row) != 4:
            raise DataError(f"{path}, line {n}: expected 4 tab-separated fields (id, sentence1, sentence2, label) "
                            f"as the header says, got {len(row)}")
        _, a, b, y = row
        labels.append(_label(path, n, y))
        s1.append(a)
        s2.append(b)
    return s1, s2, labels


def _csv_line(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t", lineterminator="\n").writerow(row)
    return buf.getvalue()[:-1]


def read_xtreme(path: Path, lines: list[str]) -> Pairs:
    """XTREME's processed form: ``sentence1, sentence2, label`` written by ``csv.writer`` (quotes undone)."""
    s1, s2, labels = [], [], []
    for n, line in enumerate(lines, start=1):
        if line == "":
            continue
        row = next(csv.reader([line], delimiter="\t"))
        if _csv_line(row) != line:
            raise DataError(f"{path}, line {n}: not quoted as csv.writer quotes (a field with a double quote is "
                            "wrapped in quotes, its quotes doubled); expected XTREME's 'sentence1, sentence2, label' "
                            f"rows or the PAWS-X header '{chr(9).join(HEADER)}' on line 1")
        if len(row) == 2:
            if not labels:
                raise DataError(unlabeled_message(path))
            raise DataError(f"{path}, line {n}: the label is missing (2 fields; expected sentence1, sentence2, label)")
        if len(row) != 3:
            raise DataError(f"{path}, line {n}: expected XTREME's 3 tab-separated fields (sentence1, sentence2, label) "
                            f"or the PAWS-X header '{chr(9).join(HEADER)}' on line 1, got {len(row)} fields")
        a, b, y = row
        labels.append(_label(path, n, y))
        s1.append(a)
        s2.append(b)
    return s1, s2, labels


def read_pawsx(path: Path) -> Pairs:
    """Sentence pairs and labels of one PAWS-X file in either published form (validated)."""
    lines = read_lines(path)
    if lines and "sentence1" in lines[0] and not is_release_header(lines[0]):
        raise DataError(f"{path}, line 1: header {lines[0]!r}, expected '{chr(9).join(HEADER)}' (the PAWS-X release) "
                        "or no header (XTREME's processed files)")
    pairs = read_release(path, lines) if lines and is_release_header(lines[0]) else read_xtreme(path, lines)
    if not pairs[2]:
        raise DataError(f"{path} holds no sentence pair")
    return pairs


@register
class PAWSX(TextBenchmark):
    name = "pawsx"
    description = "PAWS-X paraphrase identification, one task per language (multi-input; needs root and an encoder)"
    all_languages = ("en", "zh", "de", "es")
    tasks = all_languages
    suffix = ".tsv"
    options = TextBenchmark.common_options + (Option("languages", list(all_languages), "languages (tasks)"),)

    def data_file(self, prefix: str, lang: str) -> Path:
        f = self.root / f"{prefix}-{lang}.tsv"
        if not f.is_file():
            raise DataError(f"{self.name}: missing file {f} (the PAWS-X release's {release_file(f)}; XTREME's "
                            "pawsx folder has a training file for en only; see docs/data.md)")
        return f

    def check_file(self, path: Path) -> None:
        first = read_lines(path, limit=1)
        if first and not is_release_header(first[0]) and len(next(csv.reader(first, delimiter="\t"))) == 2:
            raise DataError(unlabeled_message(path))

    def encode(self, tok: Any, path: Path, lang: str) -> TensorSplit:
        a, b, y = read_pawsx(path)
        enc = tok(a, b, truncation=True, max_length=self.opts["max_length"], padding="max_length")
        return TensorSplit(pack(enc), {lang: torch.tensor(y, dtype=torch.int64)})

    def head(self, task: str) -> nn.Module:
        return nn.Sequential(FirstToken(), nn.Dropout(0.1), nn.Linear(self.hidden_size(), 2))

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred, target)

    def accumulators(self) -> dict[str, Accumulator]:
        return {t: Accuracy() for t in self.tasks}
