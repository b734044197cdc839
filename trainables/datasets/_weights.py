"""Pretrained weights a benchmark's model loads: where litmus finds them, whether they are there, how to fetch them.

Two kinds, each found where its library itself looks, so a cache filled on a
machine with internet (``litmus weights fetch SPEC``) serves an offline one:

- torchvision's ImageNet weights of a ResNet backbone: the file torchvision
  downloads, ``$TORCH_HOME/hub/checkpoints/<name>-<hash>.pth`` (default
  ``~/.cache/torch``); or a local state-dict file (the dataset option
  ``weights``);
- a Hugging Face encoder (model and tokenizer): a local directory, or a hub
  name in the Hugging Face cache (``$HF_HOME``, default
  ``~/.cache/huggingface``).

Nothing is downloaded in tests: they replace :func:`download_url` and
:func:`download_hf`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from litmus.errors import DataError

from ._paths import data_root

SUPPLY_TORCHVISION = ("run `litmus weights fetch SPEC` on a machine with internet and copy its cache here "
                      "(TORCH_HOME=DIR), or give a local state-dict file as the dataset option weights: PATH, "
                      "or set pretrained: false")
SUPPLY_HF = ("run `litmus weights fetch SPEC` on a machine with internet and copy its cache here (HF_HOME=DIR), "
             "or set the dataset option model to a local directory holding the model and its tokenizer")
#: files of a Hugging Face model repo that ``from_pretrained`` needs (one of each group)
HF_GROUPS = (("config.json",), ("model.safetensors", "pytorch_model.bin"),
             ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model"))


def download_url(url: str, dst: Path, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dst``, checking the hash prefix in its name as torch.hub does; a network that
    drops packets fails after ``timeout`` seconds without data instead of hanging."""
    import re
    import socket

    import torch

    m = re.search(r"-([a-f0-9]+)\.", Path(urlparse(url).path).name)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=m.group(1) if m else None, progress=True)
    finally:
        socket.setdefaulttimeout(old)


def download_hf(name: str, cache_dir: Path | None = None) -> None:
    """Fetch a hub model's config, weights (safetensors if published, else the PyTorch bin) and tokenizer."""
    from huggingface_hub import list_repo_files, snapshot_download

    files = set(list_repo_files(name))
    weights = ["model.safetensors"] if "model.safetensors" in files else ["pytorch_model.bin"]
    patterns = ["*.json", "*.txt", "*.model", *weights]
    snapshot_download(name, allow_patterns=patterns, cache_dir=None if cache_dir is None else str(cache_dir))


@dataclass(frozen=True)
class Weights:
    """One set of pretrained weights a dataset's model needs."""

    dataset: str
    name: str  # what they are, for messages

    def where(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def present(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def fetch(self) -> None:
        """Download into the cache (raises ``ValueError`` naming what failed and how to supply them)."""
        raise DataError(self.missing())

    def supply(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def missing(self, reason: str = "") -> str:
        why = f" and cannot be downloaded ({reason})" if reason else ""
        return f"{self.dataset}: {self.name} not found at {self.where()}{why}; {self.supply()}"

    def _download(self, download: Callable[[], None], empty: str) -> None:
        """Run ``download``; a failure (network, disk), or nothing present after it (``empty`` says why), is
        raised as one :class:`DataError` line naming what is missing and how to supply it."""
        try:
            download()
        except Exception as err:  # noqa: BLE001 - any network or disk failure, re-raised as one clear line
            raise DataError(self.missing(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")) from err
        if not self.present():
            raise DataError(self.missing(empty))


@dataclass(frozen=True)
class TorchvisionWeights(Weights):
    """torchvision's ImageNet weights of ``arch`` in the torch hub cache."""

    arch: str = "resnet18"

    @property
    def url(self) -> str:
        import torchvision

        return str(torchvision.models.get_model_weights(self.arch).IMAGENET1K_V1.url)

    @property
    def path(self) -> Path:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(self.url).path).name

    def where(self) -> str:
        return str(self.path)

    def present(self) -> bool:
        return self.path.is_file()

    def fetch(self) -> None:
        def download() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            download_url(self.url, self.path)

        self._download(download, "the download wrote no file")

    def supply(self) -> str:
        return SUPPLY_TORCHVISION


@dataclass(frozen=True)
class LocalWeights(Weights):
    """A state-dict file given as the dataset option ``weights``."""

    file: str = ""

    def where(self) -> str:
        return str(data_root(self.file))

    def present(self) -> bool:
        return data_root(self.file).is_file()

    def supply(self) -> str:
        return "copy the file there or change the dataset option weights"


@dataclass(frozen=True)
class HFWeights(Weights):
    """A Hugging Face encoder and its tokenizer: a local directory or a hub name in the HF cache."""

    model: str = ""
    cache_dir: str | None = None

    @property
    def local(self) -> bool:
        p = Path(self.model).expanduser()
        return p.is_absolute() or self.model.startswith(".") or p.is_dir()

    def where(self) -> str:
        if self.local:
            return str(Path(self.model).expanduser())
        from huggingface_hub import constants

        return f"the Hugging Face cache {self.cache_dir or constants.HF_HUB_CACHE}"

    def present(self) -> bool:
        if self.local:
            d = Path(self.model).expanduser()
            return all(any((d / f).is_file() for f in group) for group in HF_GROUPS)
        from huggingface_hub import try_to_load_from_cache

        def cached(f: str) -> bool:
            return isinstance(try_to_load_from_cache(self.model, f, cache_dir=self.cache_dir), str)

        return all(any(cached(f) for f in group) for group in HF_GROUPS)

    def fetch(self) -> None:
        if self.local:
            raise DataError(self.missing())
        self._download(lambda: download_hf(self.model, None if self.cache_dir is None else Path(self.cache_dir)),
                       "the download did not provide config, weights and tokenizer")

    def supply(self) -> str:
        return SUPPLY_HF


def backbone_weights(dataset: str, arch: str, pretrained: bool, weights: str | None) -> list[Weights]:
    """What a torchvision backbone loads: nothing, a local file or the ImageNet weights in the hub cache."""
    if weights:
        return [LocalWeights(dataset, f"{arch} state dict (option weights)", file=str(weights))]
    if pretrained:
        return [TorchvisionWeights(dataset, f"{arch} ImageNet weights (torchvision IMAGENET1K_V1)", arch=arch)]
    return []


def ensure(w: Weights) -> Path | None:
    """Make ``w`` present (downloading into the cache when missing); the file to load for torchvision weights."""
    if not w.present():
        w.fetch()
    if isinstance(w, TorchvisionWeights):
        return w.path
    if isinstance(w, LocalWeights):
        return data_root(w.file)
    return None
