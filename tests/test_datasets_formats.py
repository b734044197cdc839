"""The datasets' files as they are really published, byte for byte: UD-POS in CoNLL-U and in XTREME's processed
``word<TAB>tag`` form, PAWS-X in the release's ``x-final`` form and XTREME's csv-quoted CRLF form, CelebA's
attribute list, Office-Home's two spellings of ``Real World``. Each test compares what was read with the
expected words, labels and sentences written out by hand."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from test_datasets_text import make_tiny_model
from trainables import datasets
from trainables.datasets import celeba, pawsx, udpos

# --- UD-POS -----------------------------------------------------------------------------------------------
# CoNLL-U as the UD v2.5 treebanks write it: comments, a multi-word token whose head is the first word, an
# empty node of the enhanced graph (and an enhanced DEPS pointing at it), a word form with a space, a tie
# between two words of a multi-word token (both attached to the noun: XTREME's POS precedence picks ADP), a
# sentence whose forms are withheld (UD_English-ESL style: dropped by XTREME), a zero-width non-joiner.
CONLLU = (
    "# newdoc id = d1\n"
    "# sent_id = s1\n"
    "# text = We wanna go to New York.\n"
    "1\tWe\twe\tPRON\tPRP\t_\t2\tnsubj\t2:nsubj|4.1:nsubj\t_\n"
    "2-3\twanna\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "2\twan\twant\tVERB\tVBP\t_\t0\troot\t0:root\tSpaceAfter=No\n"
    "3\tna\tto\tPART\tTO\t_\t4\tmark\t4:mark\t_\n"
    "4\tgo\tgo\tVERB\tVB\t_\t2\txcomp\t2:xcomp\t_\n"
    "4.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t2:conj\tCopyOf=4\n"
    "5\tto\tto\tADP\tIN\t_\t6\tcase\t6:case\t_\n"
    "6\tNew York\tNew York\tPROPN\tNNP\t_\t4\tobl\t4:obl\tSpaceAfter=No\n"
    "7\t.\t.\tPUNCT\t.\t_\t2\tpunct\t2:punct\t_\n"
    "\n"
    "# sent_id = s2\n"
    "1\tIl\til\tPRON\t_\t_\t2\tnsubj\t_\t_\n"
    "2\tparle\tparler\tVERB\t_\t_\t0\troot\t_\t_\n"
    "3-4\tdu\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "3\tde\tde\tADP\t_\t_\t5\tcase\t_\t_\n"
    "4\tle\tle\tDET\t_\t_\t5\tdet\t_\t_\n"
    "5\tchat\tchat\tNOUN\t_\t_\t2\tobl\t_\t_\n"
    "\n"
    "# sent_id = esl-1\n"
    "1\t_\t_\tPRON\t_\t_\t2\tnsubj\t_\t_\n"
    "2\t_\t_\tVERB\t_\t_\t0\troot\t_\t_\n"
    "3\t_\t_\tPUNCT\t_\t_\t2\tpunct\t_\t_\n"
    "\n"
    "# sent_id = s4\n"
    "1\tmi\u200cxam\tmixam\tVERB\t_\t_\t0\troot\t_\t_\n"
    "\n"
)
# The same sentences as XTREME's utils_preprocess.py writes them (LF, no blank line after the last sentence).
XTREME_TSV = ("We\tPRON\nwanna\tVERB\ngo\tVERB\nto\tADP\nNewYork\tPROPN\n.\tPUNCT\n\n"
              "Il\tPRON\nparle\tVERB\ndu\tADP\nchat\tNOUN\n\n"
              "mixam\tVERB\n")
XTREME_TEST_TSV = "We\nwanna\ngo\nto\nNewYork\n.\n\nIl\nparle\ndu\nchat\n\nmixam\n"
EXPECTED_UD = [
    (["We", "wanna", "go", "to", "NewYork", "."], ["PRON", "VERB", "VERB", "ADP", "PROPN", "PUNCT"]),
    (["Il", "parle", "du", "chat"], ["PRON", "VERB", "ADP", "NOUN"]),
    (["mixam"], ["VERB"]),
]


def as_tags(sents: list[tuple[list[str], list[int]]]) -> list[tuple[list[str], list[str]]]:
    return [(w, [udpos.UPOS[t] for t in tags]) for w, tags in sents]


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def test_udpos_conllu_and_xtreme_tsv_give_the_same_sentences(tmp_path: Path) -> None:
    conllu = udpos.read_conllu(write(tmp_path / "train-en.conllu", CONLLU), "en")
    tsv = udpos.read_xtreme_tsv(write(tmp_path / "train-en.tsv", XTREME_TSV))
    assert as_tags(conllu) == EXPECTED_UD
    assert as_tags(tsv) == EXPECTED_UD
    # CRLF copies read the same
    crlf = udpos.read_xtreme_tsv(write(tmp_path / "dev-en.tsv", XTREME_TSV.replace("\n", "\r\n")))
    assert as_tags(crlf) == EXPECTED_UD


def test_udpos_multiword_head_follows_xtremes_precedence_per_language() -> None:
    # two words of a span at the same depth: default order ranks PRON before AUX, Spanish ranks AUX first
    heads = {1: [0], 2: [1], 3: [1]}
    upos = {1: "VERB", 2: "AUX", 3: "PRON"}
    assert udpos._span_head([2, 3], heads, upos, "en") == 3
    assert udpos._span_head([2, 3], heads, upos, "es") == 2
    # a unique highest word wins whatever its tag
    assert udpos._span_head([1, 2], heads, {1: "X", 2: "VERB"}, "en") == 1


def test_udpos_benchmark_reads_each_split_in_the_form_present(tmp_path: Path) -> None:
    root = tmp_path / "udpos"
    root.mkdir()
    write(root / "train-en.tsv", XTREME_TSV)
    write(root / "dev-en.conllu", CONLLU)
    write(root / "test-en.tsv", XTREME_TEST_TSV)
    write(root / "test-en.conllu", CONLLU)  # a .conllu wins over XTREME's unlabelled test file
    texts = [" ".join(w) for w, _ in EXPECTED_UD] + ["New York"]
    model = make_tiny_model(tmp_path / "tiny-bert", texts)
    bench = datasets.build("udpos", root=str(root), model=str(model), languages=["en"], max_length=16)
    assert bench.data_file("train", "en").name == "train-en.tsv"
    assert bench.data_file("test", "en").name == "test-en.conllu"
    s = bench.load()
    for split in (s.train, s.val, s.test):
        labels = split["en"].targets["en"]
        got = [labels[k][labels[k] != udpos.IGNORE].tolist() for k in range(len(labels))]
        assert got == [[udpos.TAG[t] for t in tags] for _, tags in EXPECTED_UD]
    torch.testing.assert_close(s.train["en"].inputs, s.val["en"].inputs)


def test_udpos_refuses_unlabelled_and_malformed_files(tmp_path: Path) -> None:
    root = tmp_path / "udpos"
    root.mkdir()
    for split in ("train", "dev"):
        write(root / f"{split}-en.tsv", XTREME_TSV)
    write(root / "test-en.tsv", XTREME_TEST_TSV)
    model = make_tiny_model(tmp_path / "tiny-bert", ["We go"])
    with pytest.raises(ValueError, match=r"test-en\.tsv holds words without tags: the labels are absent.*"
                                         r"test-en\.conllu"):
        datasets.build("udpos", root=str(root), model=str(model), languages=["en"])
    with pytest.raises(ValueError, match=r"test-en\.tsv holds words without tags"):
        udpos.read_xtreme_tsv(root / "test-en.tsv")
    bad = write(tmp_path / "bad.tsv", "We\tPRON\ngo\n")
    with pytest.raises(ValueError, match=r"bad\.tsv, line 2: a word without a tag, expected 'word<TAB>tag'"):
        udpos.read_xtreme_tsv(bad)
    bad = write(tmp_path / "bad2.tsv", "We\tPRN\n")
    with pytest.raises(ValueError, match=r"bad2\.tsv, line 1: UPOS tag 'PRN' is not one of the 17"):
        udpos.read_xtreme_tsv(bad)
    bad = write(tmp_path / "bad.conllu", "1\tx\tx\tNOUN\t_\t_\t0\troot\t_\t_\n2-4\txy\t_\t_\t_\t_\t_\t_\t_\t_\n\n")
    with pytest.raises(ValueError, match=r"bad\.conllu, line 2: multi-word token 2-4 covers words"):
        udpos.read_conllu(bad)
    renamed = write(tmp_path / "dev-en.conllu", XTREME_TSV)  # XTREME's file under the CoNLL-U name
    with pytest.raises(ValueError, match=r"dev-en\.conllu, line 1: expected 10 tab-separated CoNLL-U fields, got 2 "
                                         r"\(a word<TAB>tag line: XTREME's processed form is read from dev-en\.tsv\)"):
        udpos.read_conllu(renamed)
    (root / "test-en.tsv").unlink()
    with pytest.raises(ValueError, match=r"missing file .*test-en\.conllu \(or XTREME's test-en\.tsv"):
        datasets.build("udpos", root=str(root), model=str(model), languages=["en"])


# --- PAWS-X -----------------------------------------------------------------------------------------------
# The release (x-final/de/dev_2k.tsv): header, four fields, quotes are plain characters, an untranslated pair
# left empty, the "NS" placeholder of failed translations.
RELEASE = ("id\tsentence1\tsentence2\tlabel\n"
           "1\tDie \"IPA\" besteht aus zwei Teilen.\tDas \"IPA\" hat zwei Teile.\t1\n"
           "2\t\"Quoted\" am Anfang.\tOhne Anfang.\t0\n"
           "3\t\t\t0\n"
           "684\tDie Straße verläuft weiter nach Westen.\tNS\t0\n")
# The same rows as XTREME's utils_preprocess.py writes them with csv.writer: no header, no id, CRLF, fields
# with a quote wrapped in quotes and the inner quotes doubled.
XTREME_PAWSX = ("\"Die \"\"IPA\"\" besteht aus zwei Teilen.\"\t\"Das \"\"IPA\"\" hat zwei Teile.\"\t1\r\n"
                "\"\"\"Quoted\"\" am Anfang.\"\tOhne Anfang.\t0\r\n"
                "\t\t0\r\n"
                "Die Straße verläuft weiter nach Westen.\tNS\t0\r\n")
XTREME_PAWSX_TEST = ("\"Die \"\"IPA\"\" besteht aus zwei Teilen.\"\t\"Das \"\"IPA\"\" hat zwei Teile.\"\r\n"
                     "\t\r\n")
EXPECTED_PAWSX = (["Die \"IPA\" besteht aus zwei Teilen.", "\"Quoted\" am Anfang.", "",
                   "Die Straße verläuft weiter nach Westen."],
                  ["Das \"IPA\" hat zwei Teile.", "Ohne Anfang.", "", "NS"],
                  [1, 0, 0, 0])


def test_pawsx_release_and_xtreme_forms_give_the_same_pairs(tmp_path: Path) -> None:
    assert pawsx.read_pawsx(write(tmp_path / "dev-de.tsv", RELEASE)) == EXPECTED_PAWSX
    assert pawsx.read_pawsx(write(tmp_path / "train-de.tsv", XTREME_PAWSX)) == EXPECTED_PAWSX
    # a release file with CRLF ends and a header field followed by a space reads the same
    crlf = RELEASE.replace("label\n", "label \n").replace("\n", "\r\n")
    assert pawsx.read_pawsx(write(tmp_path / "test-de.tsv", crlf)) == EXPECTED_PAWSX


def test_pawsx_refuses_unlabelled_files_and_missing_labels(tmp_path: Path) -> None:
    f = write(tmp_path / "test-de.tsv", XTREME_PAWSX_TEST)
    with pytest.raises(ValueError, match=r"test-de\.tsv holds sentence pairs without labels.*the labels are absent.*"
                                         r"x-final/de/test_2k\.tsv as test-de\.tsv"):
        pawsx.read_pawsx(f)
    f = write(tmp_path / "train-en.tsv", XTREME_PAWSX + "a\tb\r\n")
    with pytest.raises(ValueError, match=r"train-en\.tsv, line 5: the label is missing"):
        pawsx.read_pawsx(f)
    f = write(tmp_path / "dev-es.tsv", RELEASE + "5\ta\tb\n")
    with pytest.raises(ValueError, match=r"dev-es\.tsv, line 6: the label is missing \(3 fields"):
        pawsx.read_pawsx(f)
    f = write(tmp_path / "dev-es.tsv", RELEASE + "5\ta\tb\t\n")
    with pytest.raises(ValueError, match=r"dev-es\.tsv, line 6: the label is missing, expected 0 or 1"):
        pawsx.read_pawsx(f)
    # a headerless file whose quotes are not csv quoting would be read wrong: refused
    f = write(tmp_path / "dev-zh.tsv", "\"IPA\" ist gut\tb\t1\n")
    with pytest.raises(ValueError, match=r"dev-zh\.tsv, line 1: not quoted as csv\.writer quotes"):
        pawsx.read_pawsx(f)
    f = write(tmp_path / "dev-zh.tsv", "1\ta\tb\t1\n")
    with pytest.raises(ValueError, match=r"dev-zh\.tsv, line 1: expected XTREME's 3 tab-separated fields"):
        pawsx.read_pawsx(f)
    f = write(tmp_path / "dev-zh.tsv", "id\tsentence1\tsentence2\n")
    with pytest.raises(ValueError, match=r"dev-zh\.tsv, line 1: header .* expected 'id\tsentence1\tsentence2\tlabel'"):
        pawsx.read_pawsx(f)


def test_pawsx_benchmark_checks_files_before_training(tmp_path: Path) -> None:
    root = tmp_path / "pawsx"
    root.mkdir()
    write(root / "train-de.tsv", RELEASE)
    write(root / "dev-de.tsv", XTREME_PAWSX)
    write(root / "test-de.tsv", XTREME_PAWSX_TEST)
    model = make_tiny_model(tmp_path / "tiny-bert", [s for s in EXPECTED_PAWSX[0] + EXPECTED_PAWSX[1] if s])
    with pytest.raises(ValueError, match=r"test-de\.tsv holds sentence pairs without labels"):
        datasets.build("pawsx", root=str(root), model=str(model), languages=["de"])
    with pytest.raises(ValueError, match=r"missing file .*train-zh\.tsv \(the PAWS-X release's "
                                         r"x-final/zh/translated_train\.tsv"):
        datasets.build("pawsx", root=str(root), model=str(model), languages=["zh"])
    write(root / "test-de.tsv", RELEASE)
    s = datasets.build("pawsx", root=str(root), model=str(model), languages=["de"], max_length=24).load()
    assert s.train["de"].targets["de"].tolist() == EXPECTED_PAWSX[2]
    torch.testing.assert_close(s.train["de"].inputs, s.val["de"].inputs)  # same pairs, same token ids


# --- CelebA -----------------------------------------------------------------------------------------------
def celeba_attr_text(rows: list[tuple[str, list[int]]]) -> str:
    """list_attr_celeba.txt as released: count, the names line ending in a space, values right-aligned in
    two columns (so a 1 is preceded by two spaces)."""
    out = [str(len(rows)), " ".join(celeba.ATTRIBUTES) + " "]
    out += [f + " " + " ".join(f"{v:2d}" for v in vals) for f, vals in rows]
    return "\n".join(out) + "\n"


def test_celeba_attribute_file_as_released(tmp_path: Path) -> None:
    first = [-1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, 1, -1, -1, -1, -1, -1, -1, 1, 1, -1, 1, -1, -1, 1, -1, -1,
             1, -1, -1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1]  # the release's first row (000001.jpg)
    second = [-v for v in first]
    text = celeba_attr_text([("000001.jpg", first), ("000002.jpg", second)])
    assert text.splitlines()[1].endswith("Young ") and text.splitlines()[2].startswith("000001.jpg -1  1  1 -1")
    for name, body in (("lf.txt", text), ("crlf.txt", text.replace("\n", "\r\n"))):
        got = celeba.read_attributes(write(tmp_path / name, body))
        assert got == {"000001.jpg": [(v + 1) // 2 for v in first], "000002.jpg": [(v + 1) // 2 for v in second]}


# --- Office-Home ------------------------------------------------------------------------------------------
def test_office_home_lists_say_real_world_either_way(tmp_path: Path) -> None:
    root = tmp_path / "OfficeHomeDataset_10072016"
    classes = ("Alarm_Clock", "Bike")
    for d in ("Art", "Clipart", "Product", "Real World"):  # the released archive's folder names
        for c in classes:
            (root / d / c).mkdir(parents=True)
            Image.new("RGB", (8, 8), (40 * len(d), 0, 0)).save(root / d / c / "00001.jpg")
    for d in ("Art", "Clipart", "Product", "Real_World"):  # LibMTL's lists (data_txt/office-home/*.txt)
        for s in ("train", "val", "test"):
            write(root / f"{d}_{s}.txt", "".join(f"{d}/{c}/00001.jpg {k}\n" for k, c in enumerate(classes)))
    bench = datasets.build("office_home", root=str(root), image_size=8, pretrained=False)
    split = bench.load().test["Real_World"]
    assert split.items == [("Real World/Alarm_Clock/00001.jpg", 0), ("Real World/Bike/00001.jpg", 1)]
    x, y = split[1]
    assert x.shape == (3, 8, 8) and y == {"Real_World": torch.tensor(1)}
    (root / "Real World" / "Bike" / "00001.jpg").unlink()
    with pytest.raises(ValueError, match=r"Real_World_train\.txt, line 2: image .*Real_World/Bike/00001\.jpg does not exist "
                                         r"\(nor under 'Real World'\)"):
        datasets.build("office_home", root=str(root), image_size=8, pretrained=False).load()


def test_make_splits_runs_as_a_module_without_warnings(tmp_path: Path) -> None:
    root = tmp_path / "office"
    for d in ("amazon", "dslr"):
        (root / d / "images" / "mug").mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (4, 4)).save(root / d / "images" / "mug" / f"frame_{i:04d}.jpg")
    r = subprocess.run([sys.executable, "-W", "error", "-m", "trainables.datasets.make_splits", str(root)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout.splitlines() == ["amazon: train 3, val 1, test 1", "dslr: train 3, val 1, test 1"]


# --- CityScapes -------------------------------------------------------------------------------------------
def test_cityscapes_reads_mtans_label_7_folder(tmp_path: Path) -> None:
    """MTAN's CityScapes archive has label_2/, label_7/, label_19/ (LibMTL's has label/): the 7-class one is read."""
    import numpy as np

    from test_datasets_dense import write_dense

    root = write_dense(tmp_path / "cityscapes", ("segmentation", "depth"), 7)
    for split in ("train", "val"):
        (root / split / "label").rename(root / split / "label_7")
        for other, k in (("label_2", 2), ("label_19", 19)):
            (root / split / other).mkdir()
            for f in (root / split / "label_7").iterdir():
                np.save(root / split / other / f.name, np.full((16, 24), k - 1, np.float32))
    bench = datasets.build("cityscapes", root=str(root), backbone="resnet18", head_channels=8)
    s = bench.load()
    _, y = s.test[2]
    expected = torch.from_numpy(np.load(root / "val" / "label_7" / "2.npy").astype(np.int64))
    assert torch.equal(y["segmentation"], expected) and int(y["segmentation"].max()) <= 6
    for split in ("train", "val"):
        shutil.rmtree(root / split / "label_7")
    with pytest.raises(ValueError, match=r"missing folder .*train/label \(expected train/label/<i>\.npy files or "
                                         r"train/label_7/ as in MTAN's archive\)"):
        datasets.build("cityscapes", root=str(root))
