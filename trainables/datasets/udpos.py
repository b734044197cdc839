"""``udpos``: part-of-speech tagging on Universal Dependencies v2.5 (Nivre et al., 2020) in XTREME (Hu et
al., 2020), one task per language (en, zh, te, vi by default), each with its own sentences.

Files ``{root}/{train,dev,test}-{lang}.{conllu,tsv}``, each split in either
form (a ``.conllu`` wins over a ``.tsv`` of the same split):

- CoNLL-U (a language's UD v2.5 treebanks concatenated), read as XTREME's
  ``download_data.sh`` + ``utils_preprocess.py`` read it: a multi-word token
  (``1-2 del``) replaces its syntactic words by its fused form, tagged with
  the UPOS of the span's head (the word closest to the root; ties broken by
  XTREME's POS precedence list); empty nodes (``1.1``) and comments are
  skipped; spaces and zero-width non-joiners are removed from word forms;
  sentences whose forms are withheld (``_``) are dropped.
- XTREME's processed ``word<TAB>tag`` files (a blank line between sentences).
  XTREME's test files hold words only (the tags are withheld): they are refused,
  naming the UD test treebank to use instead.

Either way a sentence gives the same words and tags. The 17 UPOS tags are the
classes. Words are tokenised into subwords; the first subword of a word
carries its tag, continuations and special tokens get ``-100`` (ignored by the
loss and the metrics); words beyond ``max_length`` are truncated. Setting of
Lin et al. (2022, Table 2): mBERT shared encoder, a linear tagger per
language, cross-entropy, Adam 2e-5, batch 32; token-level accuracy and macro F1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from litmus.errors import DataError

from ..metrics import F1, Accumulator
from ._text import TextBenchmark, TokenLogits, pack, read_lines
from .base import Option, TensorSplit, register

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")
TAG = {t: i for i, t in enumerate(UPOS)}
IGNORE = -100
SUFFIXES = (".conllu", ".tsv")
#: XTREME's conllu_to_conll.py (ud-conversion-tools) POS precedence for choosing a multi-word token's head
PRECEDENCE = {
    "default": ("VERB", "NOUN", "PROPN", "PRON", "ADJ", "NUM", "ADV", "INTJ", "AUX", "ADP", "DET", "PART", "CCONJ",
                "SCONJ", "X", "PUNCT"),
    "es": ("VERB", "AUX", "PRON", "ADP", "DET"),
    "fr": ("VERB", "AUX", "PRON", "NOUN", "ADJ", "ADV", "ADP", "DET", "PART", "SCONJ", "CONJ"),
    "it": ("VERB", "AUX", "ADV", "PRON", "ADP", "DET", "INTJ"),
}
Sentence = tuple[list[str], list[int]]


def clean_form(form: str) -> str:
    """XTREME's word form: spaces and zero-width non-joiners removed (``utils_preprocess.remove_empty_space``)."""
    return "".join(form.replace("\u200c", "").split(" "))


def keep_sentence(words: list[str]) -> bool:
    """XTREME drops sentences whose forms are withheld: those with ``_`` forms, unless fewer than ``len - 1``."""
    empty = sum(w == "_" for w in words)
    return empty == 0 or empty < len(words) - 1


def _depths(heads: dict[int, list[int]], ids: list[int]) -> dict[int, int]:
    """Number of ancestors of each word in the graph of HEAD and enhanced DEPS edges."""
    out = {}
    for i in ids:
        seen: set[int] = set()
        todo = list(heads.get(i, []))
        while todo:
            h = todo.pop()
            if h not in seen:
                seen.add(h)
                todo.extend(heads.get(h, []))
        seen.discard(i)
        out[i] = len(seen)
    return out


def _span_head(span: list[int], heads: dict[int, list[int]], upos: dict[int, str], lang: str) -> int:
    """The word of a multi-word token that gets the fused form (XTREME's ``_choose_spanhead_from_heuristics``)."""
    depth = _depths(heads, span)
    top = min(depth[i] for i in span)
    highest = [i for i in span if depth[i] == top]
    if len(highest) == 1:
        return highest[0]
    order = PRECEDENCE.get(lang, PRECEDENCE["default"])
    rank = {t: k for k, t in enumerate(order)}
    return min(highest, key=lambda i: rank.get(upos[i], len(order)))  # min keeps the first of equal ranks


def read_conllu(path: Path, lang: str = "default") -> list[Sentence]:
    """Sentences as (words, UPOS indices) of one CoNLL-U file, as XTREME's preprocessing makes them (validated)."""
    sents: list[Sentence] = []
    block: list[tuple[int, list[str]]] = []

    def close() -> None:
        if block:
            sent = _sentence(path, block, lang)
            if sent is not None:
                sents.append(sent)
        block.clear()

    lines = read_lines(path)
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            close()
        elif not line.startswith("#"):
            cols = line.split("\t")
            if len(cols) != 10:
                hint = (f" (a word<TAB>tag line: XTREME's processed form is read from {path.stem}.tsv)"
                        if len(cols) in (1, 2) else "")
                raise DataError(f"{path}, line {n}: expected 10 tab-separated CoNLL-U fields, got {len(cols)}{hint}")
            block.append((n, cols))
    close()
    if not sents:
        raise DataError(f"{path} holds no sentence")
    return sents


def _sentence(path: Path, block: list[tuple[int, list[str]]], lang: str) -> Sentence | None:
    forms: dict[int, str] = {}
    upos: dict[int, str] = {}
    heads: dict[int, list[int]] = {}
    spans: list[tuple[int, int, str, int]] = []
    for n, cols in block:
        wid = cols[0]
        if "." in wid:  # an empty node of the enhanced graph
            continue
        if "-" in wid:
            a, _, b = wid.partition("-")
            if not (a.isdigit() and b.isdigit() and int(a) < int(b)):
                raise DataError(f"{path}, line {n}: multi-word token id {wid!r}, expected 'first-last'")
            spans.append((int(a), int(b), cols[1], n))
            continue
        if not wid.isdigit():
            raise DataError(f"{path}, line {n}: word id {wid!r}, expected an integer, a range or a decimal")
        i = int(wid)
        if cols[3] not in TAG:
            raise DataError(f"{path}, line {n}: UPOS tag {cols[3]!r} is not one of the 17 UD tags")
        forms[i], upos[i] = cols[1], cols[3]
        hs = [int(cols[6])] if cols[6].isdigit() else []
        if cols[8] != "_":
            hs += [int(h) for h, _, _ in (p.partition(":") for p in cols[8].split("|")) if h.isdigit()]
        heads[i] = hs
    removed: set[int] = set()
    for a, b, form, n in spans:
        span = list(range(a, b + 1))
        if any(i not in forms for i in span):
            raise DataError(f"{path}, line {n}: multi-word token {a}-{b} covers words that the sentence lacks")
        head = _span_head(span, heads, upos, lang)
        forms[head] = form
        removed.update(i for i in span if i != head)
    ids = [i for i in sorted(forms) if i not in removed]
    words = [forms[i] for i in ids]
    if not keep_sentence(words):
        return None
    return [clean_form(w) for w in words], [TAG[upos[i]] for i in ids]


def read_xtreme_tsv(path: Path) -> list[Sentence]:
    """Sentences of XTREME's processed UD-POS file: ``word<TAB>tag`` lines, a blank line between sentences."""
    sents: list[Sentence] = []
    words: list[str] = []
    tags: list[int] = []
    for n, line in enumerate(read_lines(path), start=1):
        if line == "":
            if words:
                sents.append((words, tags))
            words, tags = [], []
            continue
        cols = line.split("\t")
        if len(cols) == 1:
            if not sents and not words:
                raise DataError(unlabeled_message(path))
            raise DataError(f"{path}, line {n}: a word without a tag, expected 'word<TAB>tag'")
        if len(cols) != 2:
            raise DataError(f"{path}, line {n}: expected 'word<TAB>tag', got {len(cols)} tab-separated fields")
        if cols[1] not in TAG:
            raise DataError(f"{path}, line {n}: UPOS tag {cols[1]!r} is not one of the 17 UD tags")
        words.append(cols[0])
        tags.append(TAG[cols[1]])
    if words:
        sents.append((words, tags))
    if not sents:
        raise DataError(f"{path} holds no sentence")
    return sents


def unlabeled_message(path: Path) -> str:
    split, _, lang = path.stem.partition("-")
    ud = {"train": "train", "dev": "dev", "test": "test"}.get(split, split)
    return (f"{path} holds words without tags: the labels are absent (XTREME withholds its test tags); "
            f"put the UD v2.5 treebanks' {ud} files of {lang or 'the language'} concatenated as "
            f"{path.with_suffix('.conllu').name} in {path.parent} (see docs/data.md)")


def read_sentences(path: Path, lang: str) -> list[Sentence]:
    """A split file in either form (by its suffix)."""
    return read_conllu(path, lang) if path.suffix == ".conllu" else read_xtreme_tsv(path)


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
    options = TextBenchmark.common_options + (Option("languages", list(all_languages), "languages (tasks)"),)

    def data_file(self, prefix: str, lang: str) -> Path:
        for suffix in SUFFIXES:
            f = self.root / f"{prefix}-{lang}{suffix}"
            if f.is_file():
                return f
        raise DataError(f"{self.name}: missing file {self.root / f'{prefix}-{lang}.conllu'} (or XTREME's "
                        f"{prefix}-{lang}.tsv; see docs/data.md)")

    def check_file(self, path: Path) -> None:
        if path.suffix == ".tsv":
            first = next((ln for ln in read_lines(path, limit=1)), "")
            if first and "\t" not in first:
                raise DataError(unlabeled_message(path))

    def encode(self, tok: Any, path: Path, lang: str) -> TensorSplit:
        sents = read_sentences(path, lang)
        enc = tok([w for w, _ in sents], is_split_into_words=True, truncation=True,
                  max_length=self.opts["max_length"], padding="max_length")
        return TensorSplit(pack(enc), {lang: align(enc, [t for _, t in sents])})

    def head(self, task: str) -> nn.Module:
        return TokenLogits(self.hidden_size(), len(UPOS))

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred, target, ignore_index=IGNORE)

    def accumulators(self) -> dict[str, Accumulator]:
        return {t: F1(len(UPOS)) for t in self.tasks}
