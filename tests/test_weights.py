"""Pretrained weights offline: a missing file is one clear error naming it and the ways to supply it;
``litmus weights fetch`` fills a cache that then serves an offline machine; ``litmus run`` checks every
dataset's data and weights before Ray starts. Nothing is downloaded: the download functions are replaced
by fakes that write what the real ones would (a torchvision state dict; a Hugging Face cache snapshot)."""

from __future__ import annotations

import shutil
import textwrap
import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image

from study import cli
from study.preflight import UnreachableError, check_reachable
from test_datasets_text import make_tiny_model
from trainables import datasets
from trainables.datasets import _weights

R18_FILE = "resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1 file name


def no_network(url: str, dst: Path) -> None:
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def no_hub(name: str, cache_dir: Path | None = None) -> None:
    raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")


def fake_r18(seed: int = 3) -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18().state_dict()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch cache and no network for every test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(_weights, "download_url", no_network)
    monkeypatch.setattr(_weights, "download_hf", no_hub)
    return tmp_path


@pytest.fixture
def office(tmp_path: Path) -> Path:
    from trainables.datasets import make_splits

    root = tmp_path / "office31"
    for d in ("amazon", "dslr", "webcam"):
        for c in ("mug", "pen"):
            (root / d / "images" / c).mkdir(parents=True)
            for i in range(5):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / d / "images" / c / f"frame_{i:04d}.jpg")
    make_splits.make_splits(root)
    return root


def test_offline_pretrained_backbone_is_one_clear_error(office: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    bench = datasets.build("office31", root=str(office), image_size=16)  # pretrained: true by default
    with pytest.raises(ValueError) as info:
        bench.encoder_blocks()
    msg = str(info.value)
    assert msg.startswith(f"office31: resnet18 ImageNet weights (torchvision IMAGENET1K_V1) not found at "
                          f"{tmp_path / 'torch-home' / 'hub' / 'checkpoints' / R18_FILE} and cannot be downloaded "
                          "(URLError: <urlopen error [Errno -2] Name or service not known>)")
    for way in ("litmus weights fetch SPEC", "TORCH_HOME=DIR", "weights: PATH", "pretrained: false"):
        assert way in msg
    rc = cli.main(["train", "--dataset", "office31", "--option", f"root={office}", "--option", "image_size=16",
                   "--epochs", "1", "--max-steps", "1", "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and "litmus: error: office31: resnet18 ImageNet weights" in err
    # refused before the store is touched, in one line
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("litmus: error: office31: resnet18 ImageNet weights")
    assert not (tmp_path / "store").exists()


def test_train_refuses_missing_weights_before_recording_a_trial(office: Path, tmp_path: Path) -> None:
    """The weights go missing after the CLI's check (or run_single is called directly): the trainer's load
    refuses them, and no failed trial is written for what is bad input."""
    from study.single import run_single
    from study.store import Store
    from trainables.config import TrainConfig

    store = Store(tmp_path / "store")
    cfg = TrainConfig(dataset="office31", dataset_options={"root": str(office), "image_size": 16}, epochs=1,
                      max_steps_per_epoch=1)
    with pytest.raises(ValueError, match="office31: resnet18 ImageNet weights .* cannot be downloaded"):
        run_single(cfg, store)
    assert store.trials() == [] and not list((tmp_path / "store").rglob("*.parquet"))


def test_weights_option_loads_a_local_file_and_pretrained_paths_are_refused(office: Path, tmp_path: Path) -> None:
    state = fake_r18()
    torch.save(state, tmp_path / "r18.pth")
    bench = datasets.build("office31", root=str(office), image_size=16, weights=str(tmp_path / "r18.pth"))
    torch.testing.assert_close(bench.encoder_blocks()[0][0].weight, state["conv1.weight"])
    assert [type(w).__name__ for w in bench.pretrained_weights()] == ["LocalWeights"]
    with pytest.raises(ValueError, match=r"office31 option pretrained must be true or false, got '.*r18\.pth'; give a "
                                         r"local state-dict file as the option weights: PATH"):
        datasets.build("office31", root=str(office), pretrained=str(tmp_path / "r18.pth"))
    with pytest.raises(ValueError, match=r"office31: option weights .* is set but pretrained is false"):
        datasets.build("office31", root=str(office), pretrained=False, weights=str(tmp_path / "r18.pth"))
    with pytest.raises(ValueError, match=r"office31 option weights: state-dict file .*none\.pth does not exist"):
        datasets.build("office31", root=str(office), weights=str(tmp_path / "none.pth"))
    assert datasets.build("office31", root=str(office), pretrained=False).pretrained_weights() == []


def write_hf_snapshot(model_dir: Path, hub: Path, repo: str) -> None:
    """What snapshot_download leaves in a Hugging Face cache: refs/main -> snapshots/<commit>/<files>."""
    base = hub / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    shutil.copytree(model_dir, base / "snapshots" / "0123456789abcdef0123456789abcdef01234567")


def test_weights_fetch_fills_a_cache_that_serves_offline(office: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    tiny = make_tiny_model(tmp_path / "tiny-bert", ["a b c", "d e f"])
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent("""\
        name: offline
        datasets:
          - name: office31
            options: {root: /nowhere/office31, pretrained: true}
          - name: office_home
            options: {root: /nowhere/office_home}
          - {name: pawsx, options: {root: /nowhere/pawsx, model: someorg/tiny-bert}}
          - multi_digits
        """))
    calls: list[str] = []

    def fake_download(url: str, dst: Path) -> None:
        calls.append(url)
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.save(fake_r18(), dst)

    def fake_hf(name: str, cache_dir: Path | None = None) -> None:
        calls.append(name)
        assert cache_dir is not None
        write_hf_snapshot(tiny, cache_dir, name)

    cache = tmp_path / "cache"
    assert cli.main(["weights", "check", str(spec), "--cache", str(cache)]) == 2
    out = capsys.readouterr()
    assert "MISSING  office31: resnet18 ImageNet weights" in out.out and "MISSING  pawsx: Hugging Face encoder" in out.out
    assert "2 of 2 pretrained weights missing" in out.err  # office31 and office_home share one file
    monkeypatch.setattr(_weights, "download_url", fake_download)
    monkeypatch.setattr(_weights, "download_hf", fake_hf)
    assert cli.main(["weights", "fetch", str(spec), "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert calls == ["https://download.pytorch.org/models/" + R18_FILE, "someorg/tiny-bert"]
    assert f"present  office31: resnet18 ImageNet weights (torchvision IMAGENET1K_V1) at " \
           f"{cache / 'torch' / 'hub' / 'checkpoints' / R18_FILE}" in out
    assert f"export TORCH_HOME={cache / 'torch'} HF_HOME={cache / 'huggingface'}" in out
    assert cli.main(["weights", "check", str(spec), "--cache", str(cache)]) == 0
    # the offline machine: TORCH_HOME at the copied cache, no network
    monkeypatch.setattr(_weights, "download_url", no_network)
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    stem = datasets.build("office31", root=str(office), image_size=16).encoder_blocks()[0]
    torch.testing.assert_close(stem[0].weight, fake_r18()["conv1.weight"])
    # the HF snapshot is one transformers itself loads offline
    from transformers import AutoModel

    got = AutoModel.from_pretrained("someorg/tiny-bert", cache_dir=str(cache / "huggingface" / "hub"),
                                    local_files_only=True)
    ref = AutoModel.from_pretrained(str(tiny))
    torch.testing.assert_close(got.embeddings.word_embeddings.weight, ref.embeddings.word_embeddings.weight)


def quick_spec(path: Path, office: Path, extra: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""\
        name: reach
        store: {path.parent / 'store'}
        datasets:
          - name: office31
            options: {{root: {office}, image_size: 16}}
            epochs: 1
        {extra}
        architectures: [hps]
        methods: [ew]
        baseline: ew
        tuning: {{methods: none}}
        final: {{seeds: 1}}
        resources: {{cpu: 1}}
        """))
    return path


def test_run_checks_data_and_weights_before_ray(office: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from study import spec as spec_mod

    spec = spec_mod.load(quick_spec(tmp_path / "s.yaml", office))
    with pytest.raises(UnreachableError, match=r"a dataset input is not reachable, nothing was started: office31: "
                                               r"resnet18 ImageNet weights .* cannot be downloaded \(URLError"):
        check_reachable(spec, say=lambda s: None)
    shutil.move(office / "amazon_test.txt", tmp_path / "moved.txt")  # the data went away after the spec was read
    with pytest.raises(UnreachableError, match=r"2 dataset inputs are not reachable.*missing split list .*amazon_test\.txt"):
        check_reachable(spec, say=lambda s: None)
    rc = cli.main(["run", str(tmp_path / "s.yaml"), "--cpus", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "litmus: error: " in err and "Traceback" not in err
    assert not ray.is_initialized() and not (tmp_path / "store").exists()
    shutil.move(tmp_path / "moved.txt", office / "amazon_test.txt")
    said: list[str] = []
    monkeypatch.setattr(_weights, "download_url", lambda url, dst: torch.save(fake_r18(), dst))
    check_reachable(spec, say=said.append)  # fetched once, before any trial
    assert said == [f"litmus run: fetching resnet18 ImageNet weights (torchvision IMAGENET1K_V1) for office31 into "
                    f"{tmp_path / 'torch-home' / 'hub' / 'checkpoints' / R18_FILE}"]
    said.clear()
    check_reachable(spec, say=said.append)
    assert said == []


def test_missing_encoder_is_one_clear_error_and_model_paths_expand(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "pawsx"
    root.mkdir()
    for split in ("train", "dev", "test"):
        (root / f"{split}-en.tsv").write_text("id\tsentence1\tsentence2\tlabel\n1\ta b\tb a\t1\n2\ta c\tc d\t0\n")
    monkeypatch.setenv("MODELS", str(tmp_path / "models"))
    bench = datasets.build("pawsx", root=str(root), model="$MODELS/absent-bert", languages=["en"])
    (w,) = bench.pretrained_weights()
    assert w.where() == str(tmp_path / "models" / "absent-bert") and not w.present()
    ways = r"run `litmus weights fetch SPEC` on a machine with internet .*HF_HOME=DIR.*local directory"
    with pytest.raises(ValueError, match=r"cannot load the encoder '.*models/absent-bert' .*; " + ways):
        bench.encoder_blocks()
    with pytest.raises(ValueError, match=r"cannot load the config of '.*models/absent-bert' .*; " + ways):
        bench.hidden_size()
    with pytest.raises(ValueError, match=r"cannot load the tokenizer of '.*models/absent-bert' .*; " + ways):
        bench.load()
    make_tiny_model(tmp_path / "models" / "tiny-bert", ["a b c d"])
    bench = datasets.build("pawsx", root=str(root), model="$MODELS/tiny-bert", languages=["en"], max_length=8)
    assert bench.pretrained_weights()[0].present() and bench.hidden_size() == 32
    assert bench.load().test["en"].targets["en"].tolist() == [1, 0]
