"""Shared code of the XTREME-style text benchmarks (PAWS-X, UD-POS): a Hugging Face encoder shared across
languages, one task per language, each with its own sentences (``multi_input``).

The encoder and tokenizer come from ``transformers.AutoModel`` /
``AutoTokenizer.from_pretrained(model)``: a hub name (downloaded into the
Hugging Face cache on the user's machine) or a local directory (offline).
Inputs are packed as one integer tensor ``[N, 3, L]`` (input ids, attention
mask, token type ids) so the trainer can batch them like any tensor.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from litmus.errors import DataError

from ._paths import data_root
from ._weights import SUPPLY_HF, HFWeights, Weights
from .base import Benchmark, Defaults, Option, Splits, TensorSplit


def read_lines(path: Path, limit: int | None = None) -> list[str]:
    """The lines of a UTF-8 text file (only the first ``limit`` ones, from its first 64 KiB, if given), split at
    ``\\n`` only: a trailing ``\\r`` (CRLF files) is removed, and the other Unicode line breaks that
    ``str.splitlines`` knows, which occur inside sentences, do not split."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            text = fh.read() if limit is None else fh.read(1 << 16)
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: {err}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if limit is not None:
        lines = lines[:limit]
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@lru_cache(maxsize=4)
def tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model)
    except Exception as err:  # noqa: BLE001 - re-raised with the name
        raise DataError(f"cannot load the tokenizer of {model!r} (a Hugging Face name or a local directory): "
                        f"{_first_line(err)}; {SUPPLY_HF}") from err
    if not getattr(tok, "is_fast", False):
        raise DataError(f"the tokenizer of {model!r} is not a fast tokenizer (word alignment needs one)")
    return tok


def pack(enc: Any) -> Tensor:
    """``[N, 3, L]`` long: input ids, attention mask, token type ids (zeros if the tokenizer has none)."""
    ids = torch.as_tensor(enc["input_ids"], dtype=torch.int64)
    mask = torch.as_tensor(enc["attention_mask"], dtype=torch.int64)
    types = torch.as_tensor(enc["token_type_ids"], dtype=torch.int64) if "token_type_ids" in enc else torch.zeros_like(ids)
    return torch.stack([ids, mask, types], dim=1)


class HFEncoder(nn.Module):
    """A Hugging Face encoder reading packed ``[N, 3, L]`` inputs; returns the last hidden states ``[N, L, H]``."""

    def __init__(self, model: str) -> None:
        super().__init__()
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(model)
        except Exception as err:  # noqa: BLE001
            raise DataError(f"cannot load the encoder {model!r} (a Hugging Face name or a local directory): "
                            f"{_first_line(err)}; {SUPPLY_HF}") from err
        self.config = self.model.config
        self._types = getattr(self.config, "type_vocab_size", 0) > 0

    def forward(self, x: Tensor) -> Tensor:
        kwargs = {"input_ids": x[:, 0], "attention_mask": x[:, 1]}
        if self._types:
            kwargs["token_type_ids"] = x[:, 2]
        return self.model(**kwargs).last_hidden_state


class FirstToken(nn.Module):
    """``[N, L, H] -> [N, H]``: the first ([CLS]) token."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 0]


class TokenLogits(nn.Module):
    """A linear tagger ``[N, L, H] -> [N, C, L]`` (classes on dim 1, as cross-entropy and the metrics expect)."""

    def __init__(self, hidden: int, classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.dropout(x)).transpose(1, 2)


class TextBenchmark(Benchmark):
    """Languages as tasks; subclasses define ``all_languages``, file reading and the head."""

    multi_input = True
    all_languages: tuple[str, ...] = ()
    suffix: str = ""
    splits_files = {"train": "train", "val": "dev", "test": "test"}
    common_options = (
        Option("root", None, "folder with the {train,dev,test}-{lang} files (required)"),
        Option("model", "bert-base-multilingual-cased", "Hugging Face encoder: a hub name or a local directory"),
        Option("max_length", 128, "maximum tokens per example (longer inputs are truncated)"),
    )
    #: the fine-tuning setting of both text benchmarks (Lin et al., 2022, Table 2: Adam 2e-5, batch 32)
    defaults = Defaults(epochs=10, batch_size=32, lr=2e-5, optimizer="adam")

    def check(self) -> None:
        o = self.opts
        langs = o["languages"]
        if isinstance(langs, str):
            langs = [langs]
        if not langs or not all(isinstance(x, str) for x in langs) or len(set(langs)) != len(langs):
            raise DataError(f"{self.name} option languages must be a non-empty list of distinct language codes, got {langs!r}")
        self.tasks = tuple(langs)  # type: ignore[misc]  # the tasks are the chosen languages
        if o["root"] is None:
            raise DataError(f"{self.name} needs the option root: the folder of the data files (see docs/data.md)")
        root = data_root(o["root"])
        if not root.is_dir():
            raise DataError(f"{self.name}: root {root} does not exist or is not a directory")
        for lang in self.tasks:
            for s in self.splits_files.values():
                self.check_file(self.data_file(s, lang))
        if not isinstance(o["max_length"], int) or o["max_length"] < 8:
            raise DataError(f"{self.name} option max_length must be an integer >= 8, got {o['max_length']!r}")
        if not isinstance(o["model"], str) or not o["model"]:
            raise DataError(f"{self.name} option model must be a Hugging Face name or a local directory, got {o['model']!r}")

    def data_file(self, prefix: str, lang: str) -> Path:
        """The file of one split (``train``, ``dev``, ``test``) and language; raises naming what is missing."""
        f = self.root / f"{prefix}-{lang}{self.suffix}"
        if not f.is_file():
            raise DataError(f"{self.name}: missing file {f} (expected {{train,dev,test}}-{{lang}}{self.suffix})")
        return f

    def check_file(self, path: Path) -> None:
        """A cheap look at a file before training (its first line); subclasses refuse files known to be unusable."""

    def encode(self, tok: Any, path: Path, lang: str) -> TensorSplit:  # pragma: no cover - abstract
        """One split file of one language -> its tokenised inputs and that language's targets."""
        raise NotImplementedError

    def load(self) -> Splits:
        """Every split of every chosen language, read and tokenised (one training set per task)."""
        tok = tokenizer(self.encoder_name)
        out: dict[str, dict[str, TensorSplit]] = {s: {} for s in self.splits_files}
        for lang in self.tasks:
            for split, prefix in self.splits_files.items():
                out[split][lang] = self.encode(tok, self.data_file(prefix, lang), lang)
        return Splits(**out)

    @property
    def encoder_name(self) -> str:
        """The ``model`` option with ``~`` and environment variables expanded (``$LITMUS_DATA/mbert``), as ``root``."""
        return os.path.expanduser(os.path.expandvars(str(self.opts["model"])))

    @property
    def root(self) -> Path:
        return data_root(self.opts["root"])

    def pretrained_weights(self) -> list[Weights]:
        name = self.encoder_name
        return [HFWeights(self.name, f"Hugging Face encoder {name!r} (model and tokenizer)", model=name)]

    def hidden_size(self) -> int:
        from transformers import AutoConfig

        try:
            return int(AutoConfig.from_pretrained(self.encoder_name).hidden_size)
        except Exception as err:  # noqa: BLE001 - re-raised with the name and the ways to supply it
            raise DataError(f"cannot load the config of {self.encoder_name!r} (a Hugging Face name or a local "
                            f"directory): {_first_line(err)}; {SUPPLY_HF}") from err

    def encoder_blocks(self) -> list[nn.Module]:
        return [HFEncoder(self.encoder_name)]
