"""``udpos``: part-of-speech tagging on Universal Dependencies v2.5 (Nivre et al., 2020) in XTREME (Hu et
al., 2020), one task per language (en, zh, te, vi by default), each with its own sentences.

Files ``{root}/{train,dev,test}-{lang}.conllu`` in CoNLL-U (a language's
treebanks concatenated); the 17 UPOS tags (column 4) are the classes;
multi-word token lines (``1-2``) and empty nodes (``1.1``) are skipped.
Words are tokenised into subwords; the first subword of a word carries its
tag, continuations and special tokens get ``-100`` (ignored by the loss and
the metrics); words beyond ``max_length`` are truncated. Setting of Lin et
al. (2022, Table 2): mBERT shared encoder, a linear tagger per language,
cross-entropy, Adam 2e-5, batch 32; token-level accuracy and macro F1.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..metrics import F1, Accumulator
from ._text import TextBenchmark, TokenLogits, pack, tokenizer
from .base import Defaults, Option, Splits, TensorSplit, register

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")
TAG = {t: i for i, t in enumerate(UPOS)}
IGNORE = -100


def read_conllu(path: Path) -> list[tuple[list[str], list[int]]]:
    """Sentences as (words, UPOS indices) of one CoNLL-U file (validated)."""
    sents: list[tuple[list[str], list[int]]] = []
    words: list[str] = []
    tags: list[int] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            if words:
                sents.append((words, tags))
            words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise ValueError(f"{path}, line {n}: expected 10 tab-separated CoNLL-U fields, got {len(cols)}")
        if "-" in cols[0] or "." in cols[0]:
            continue
        if cols[3] not in TAG:
            raise ValueError(f"{path}, line {n}: UPOS tag {cols[3]!r} is not one of the 17 UD tags")
        words.append(cols[1])
        tags.append(TAG[cols[3]])
    if words:
        sents.append((words, tags))
    if not sents:
        raise ValueError(f"{path} holds no sentence")
    return sents


def align(enc: object, tags: list[list[int]]) -> Tensor:
    """Token labels: the first subword of each word gets its tag, the rest ``-100``."""
    out = []
    for i, sent_tags in enumerate(tags):
        prev = None
        row = []
        for w in enc.word_ids(i):  # type: ignore[attr-defined]
            row.append(IGNORE if w is None or w == prev else sent_tags[w])
            prev = w
        out.append(row)
    return torch.tensor(out, dtype=torch.int64)


@register
class UDPOS(TextBenchmark):
    name = "udpos"
    description = "UD-POS tagging (17 UPOS tags), one task per language (multi-input; needs root and an encoder)"
    all_languages = ("en", "zh", "te", "vi")
    tasks = all_languages
    suffix = ".conllu"
    options = TextBenchmark.common_options + (Option("languages", list(all_languages), "languages (tasks)"),)
    defaults = Defaults(epochs=10, batch_size=32, lr=2e-5, optimizer="adam")

    def load(self) -> Splits:
        tok = tokenizer(self.opts["model"])
        out: dict[str, dict[str, TensorSplit]] = {s: {} for s in self.splits_files}
        for lang in self.tasks:
            for split, prefix in self.splits_files.items():
                sents = read_conllu(self.root / f"{prefix}-{lang}.conllu")
                enc = tok([w for w, _ in sents], is_split_into_words=True, truncation=True,
                          max_length=self.opts["max_length"], padding="max_length")
                out[split][lang] = TensorSplit(pack(enc), {lang: align(enc, [t for _, t in sents])})
        return Splits(**out)

    def head(self, task: str) -> nn.Module:
        return TokenLogits(self.hidden_size(), len(UPOS))

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred, target, ignore_index=IGNORE)

    def accumulators(self) -> dict[str, Accumulator]:
        return {t: F1(len(UPOS)) for t in self.tasks}
