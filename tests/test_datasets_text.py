"""pawsx and udpos: fixtures in the XTREME file formats, a tiny BERT + WordPiece tokenizer saved to a temporary
directory and loaded through the same ``from_pretrained`` path as mBERT (nothing downloads)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from trainables import datasets
from trainables.config import TrainConfig
from trainables.datasets import udpos
from trainables.trainer import Trainer

PAIRS = {
    "en": [("the cat sat on the mat", "on the mat sat the cat", 1), ("a dog runs fast", "the bird sings", 0),
           ("she reads a book", "a book is read by her", 1), ("it rains today", "the sun is bright", 0),
           ("we eat rice", "rice is eaten by us", 1), ("cars are loud", "trees are green", 0)],
    "de": [("die katze sitzt", "die katze sitzt dort", 1), ("der hund lauft", "ein vogel singt", 0),
           ("sie liest ein buch", "ein buch wird gelesen", 1), ("es regnet heute", "die sonne scheint", 0)],
}
UD = {
    "en": [[("The", "DET"), ("cat", "NOUN"), ("sat", "VERB"), (".", "PUNCT")],
           [("Dogs", "NOUN"), ("run", "VERB"), ("quickly", "ADV")],
           [("She", "PRON"), ("reads", "VERB"), ("books", "NOUN"), ("!", "PUNCT")]],
    "vi": [[("Tôi", "PRON"), ("ăn", "VERB"), ("cơm", "NOUN")], [("Trời", "NOUN"), ("mưa", "VERB"), (".", "PUNCT")]],
}


def make_tiny_model(path: Path, texts: list[str]) -> Path:
    """Train a WordPiece tokenizer on ``texts``; save it as BertTokenizerFast with a tiny BertModel."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def pawsx_root(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "pawsx"
    root.mkdir()
    for lang, rows in PAIRS.items():
        for split in ("train", "dev", "test"):
            lines = ["id\tsentence1\tsentence2\tlabel"] + [f"{i}\t{a}\t{b}\t{y}" for i, (a, b, y) in enumerate(rows)]
            (root / f"{split}-{lang}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts = [s for rows in PAIRS.values() for a, b, _ in rows for s in (a, b)]
    return root, make_tiny_model(tmp_path / "tiny-bert", texts)


def write_conllu(path: Path, sents: list[list[tuple[str, str]]]) -> None:
    out = []
    for k, sent in enumerate(sents):
        out.append(f"# sent_id = {k}")
        for i, (w, tag) in enumerate(sent, start=1):
            out.append("\t".join([str(i), w, w.lower(), tag, "_", "_", "0", "root", "_", "_"]))
        out.append("")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


@pytest.fixture
def ud_root(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "udpos"
    root.mkdir()
    for lang, sents in UD.items():
        for split in ("train", "dev", "test"):
            write_conllu(root / f"{split}-{lang}.conllu", sents)
    texts = [" ".join(w for w, _ in s) for sents in UD.values() for s in sents]
    return root, make_tiny_model(tmp_path / "tiny-bert", texts)


def test_pawsx_trains_through_the_trainer(pawsx_root: tuple[Path, Path]) -> None:
    root, model = pawsx_root
    opts = {"root": str(root), "model": str(model), "languages": ["en", "de"], "max_length": 16}
    cfg = TrainConfig(dataset="pawsx", dataset_options=opts, epochs=1, batch_size=4, max_steps_per_epoch=2)
    tr = Trainer(cfg)
    assert tr.bench.tasks == ("en", "de") and tr.bench.multi_input
    split = tr.splits.train["en"]
    assert split.inputs.shape == (6, 3, 16) and split.targets["en"].tolist() == [1, 0, 1, 0, 1, 0]
    # [CLS] a [SEP] b [SEP] with token types 0 then 1
    tok = __import__("transformers").AutoTokenizer.from_pretrained(str(model))
    assert split.inputs[0, 0, 0] == tok.cls_token_id and split.inputs[0, 2].max() == 1
    (res,) = list(tr.epochs())
    assert all(math.isfinite(v) for v in res.train_losses.values())
    got = {(r["task"], r["metric"]): r["value"] for r in res.rows if r["split"] == "test"}
    tr.model.eval()
    with torch.no_grad():
        for lang in ("en", "de"):
            s = tr.splits.test[lang]
            acc = float((tr.model(s.inputs, (lang,))[lang].argmax(1) == s.targets[lang]).double().mean())
            assert got[(lang, "accuracy")] == pytest.approx(acc)


def test_pawsx_with_a_gradient_method(pawsx_root: tuple[Path, Path]) -> None:
    root, model = pawsx_root
    opts = {"root": str(root), "model": str(model), "languages": ["en", "de"], "max_length": 16}
    cfg = TrainConfig(dataset="pawsx", method="pcgrad", space="param", dataset_options=opts, epochs=1, batch_size=4,
                      max_steps_per_epoch=1)
    (res,) = list(Trainer(cfg).epochs())
    assert set(res.train_losses) == {"en", "de"}


def test_udpos_labels_align_to_first_subwords_and_metrics(ud_root: tuple[Path, Path]) -> None:
    root, model = ud_root
    opts = {"root": str(root), "model": str(model), "languages": ["en", "vi"], "max_length": 16}
    cfg = TrainConfig(dataset="udpos", dataset_options=opts, epochs=1, batch_size=2, max_steps_per_epoch=2)
    tr = Trainer(cfg)
    s = tr.splits.test["en"]
    labels = s.targets["en"]
    assert labels.shape == (3, 16)
    # every word gets exactly one labelled token, in order; [CLS] and padding are ignored
    for k, sent in enumerate(UD["en"]):
        tagged = labels[k][labels[k] != udpos.IGNORE].tolist()
        assert tagged == [udpos.TAG[t] for _, t in sent]
        assert labels[k, 0] == udpos.IGNORE and labels[k, -1] == udpos.IGNORE
    (res,) = list(tr.epochs())
    got = {(r["task"], r["metric"]): r["value"] for r in res.rows if r["split"] == "test"}
    tr.model.eval()
    with torch.no_grad():
        pred = tr.model(s.inputs, ("en",))["en"]
    assert pred.shape == (3, len(udpos.UPOS), 16)
    keep = labels != udpos.IGNORE
    p, g = pred.argmax(1)[keep], labels[keep]
    assert got[("en", "accuracy")] == pytest.approx(float((p == g).double().mean()))
    f1s = []
    for c in set(p.tolist()) | set(g.tolist()):
        tp = int(((p == c) & (g == c)).sum())
        prec = tp / max(int((p == c).sum()), 1)
        rec = tp / max(int((g == c).sum()), 1)
        f1s.append(0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
    assert got[("en", "f1")] == pytest.approx(sum(f1s) / len(f1s))


def test_udpos_loss_ignores_continuations() -> None:
    bench_cls = datasets.get("udpos")
    pred = torch.zeros(1, len(udpos.UPOS), 3)
    pred[0, 2, 1] = 5.0
    target = torch.tensor([[udpos.IGNORE, 2, udpos.IGNORE]])
    loss = bench_cls.loss(None, "en", pred, target)  # type: ignore[arg-type]
    expected = -torch.log_softmax(pred[0, :, 1], 0)[2]
    torch.testing.assert_close(loss, expected)


def test_text_bad_inputs(pawsx_root: tuple[Path, Path], ud_root: tuple[Path, Path], tmp_path: Path) -> None:
    root, model = pawsx_root
    with pytest.raises(ValueError, match="needs the option root"):
        datasets.build("pawsx")
    with pytest.raises(ValueError, match=r"missing file .*train-zh\.tsv"):
        datasets.build("pawsx", root=str(root), model=str(model))
    opts = {"root": str(root), "model": str(model), "languages": ["en"]}
    f = root / "dev-en.tsv"
    f.write_text(f.read_text() + "99\ta\tb\t2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dev-en\.tsv, line 8: label '2'"):
        datasets.build("pawsx", **opts).load()
    f.write_text("id\tsentence1\tsentence2\tlabel\n1\tonly two\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dev-en\.tsv, line 2: expected 4"):
        datasets.build("pawsx", **opts).load()
    with pytest.raises(ValueError, match="cannot load the tokenizer"):
        datasets.build("pawsx", root=str(root), model=str(tmp_path / "no-model"), languages=["de"]).load()
    uroot, umodel = ud_root
    g = uroot / "test-vi.conllu"
    g.write_text("1\tx\tx\tNOUNISH\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"test-vi\.conllu, line 1: UPOS tag 'NOUNISH'"):
        datasets.build("udpos", root=str(uroot), model=str(umodel), languages=["vi"]).load()
    g.write_text("1\tx\tx\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"test-vi\.conllu, line 1: expected 10"):
        datasets.build("udpos", root=str(uroot), model=str(umodel), languages=["vi"]).load()
    with pytest.raises(ValueError, match="languages"):
        datasets.build("udpos", root=str(uroot), model=str(umodel), languages=[])


def test_mmoe_refuses_token_inputs(pawsx_root: tuple[Path, Path]) -> None:
    from trainables import architectures

    root, model = pawsx_root
    bench = datasets.build("pawsx", root=str(root), model=str(model), languages=["en"])
    with pytest.raises(ValueError, match="image or vector inputs"):
        architectures.build("mmoe", bench)
    m = architectures.build("nddr", datasets.build("pawsx", root=str(root), model=str(model), languages=["en", "de"]),
                            activation=False)
    x = datasets.build("pawsx", root=str(root), model=str(model), languages=["en", "de"], max_length=16).load().test["en"].inputs
    assert m.eval()(x, ("en",))["en"].shape == (len(x), 2)
