"""Annotation lists, class-name files and class-folder trees; malformed lines reported with file and line."""

from __future__ import annotations

import os

import pytest

from maskvid.data import read_annotation_list, read_class_names, scan_class_folders
from maskvid.data.annotations import UNLABELLED
from maskvid.errors import AnnotationError


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_supported_layout(tmp_path):
    text = "# comment\na.mp4 3\n\nb.mp4,7\nc d.mp4, 2\ne.mp4 120 4\nf.mp4 10 30 5\n"
    records = read_annotation_list(write(tmp_path, "list.txt", text), root="/data")
    assert [(r.path, r.label, r.start, r.num_frames) for r in records] == [
        ("/data/a.mp4", 3, 0, None),
        ("/data/b.mp4", 7, 0, None),
        ("/data/c d.mp4", 2, 0, None),
        ("/data/e.mp4", 4, 0, 120),
        ("/data/f.mp4", 5, 10, 30),
    ]


def test_relative_paths_default_to_the_list_folder_and_header_is_skipped(tmp_path):
    records = read_annotation_list(write(tmp_path, "train.csv", "path,label\nv/x.mp4,1\n"))
    assert records[0].path == str(tmp_path / "v" / "x.mp4")


def test_unlabelled_pretraining_lists(tmp_path):
    path = write(tmp_path, "pre.txt", "a.mp4\nb.mp4 2\n")
    records = read_annotation_list(path, require_labels=False)
    assert [r.label for r in records] == [UNLABELLED, 2]
    with pytest.raises(AnnotationError, match=r"pre.txt:1: no label"):
        read_annotation_list(path)


def test_class_names_resolve_text_labels(tmp_path):
    names = read_class_names(write(tmp_path, "classes.txt", "jump\nrun\n"))
    records = read_annotation_list(write(tmp_path, "l.txt", "a.mp4 run\nb.mp4 0\n"), class_names=names)
    assert [r.label for r in records] == [1, 0]


def test_every_malformed_line_is_reported_with_its_number(tmp_path):
    text = "ok.mp4 1\nbad.mp4 x\nneg.mp4 -2\nrange.mp4 -1 10 3\n a b c d e\nbig.mp4 9\n"
    path = write(tmp_path, "broken.txt", text)
    with pytest.raises(AnnotationError) as err:
        read_annotation_list(path, class_names=["a", "b", "c"])
    lines = [line for line, _ in err.value.problems]
    assert lines == [2, 3, 4, 5, 6]
    message = str(err.value)
    assert f"{path}:2: label 'x' is not an integer" in message
    assert f"{path}:6: label 9 >= number of classes (3)" in message


def test_empty_and_missing_lists(tmp_path):
    with pytest.raises(AnnotationError, match="no entries"):
        read_annotation_list(write(tmp_path, "empty.txt", "\n# nothing\n"))
    with pytest.raises(AnnotationError, match="cannot read"):
        read_annotation_list(tmp_path / "nope.txt")
    with pytest.raises(AnnotationError, match="duplicate class name 'a'"):
        read_class_names(write(tmp_path, "dup.txt", "a\nb\na\n"))


def test_class_folders(tmp_path):
    for cls, files in {"walk": ["1.mp4", "2.avi"], "jump": ["3.mkv", "notes.txt"]}.items():
        (tmp_path / cls).mkdir()
        for f in files:
            (tmp_path / cls / f).write_bytes(b"")
    records, classes = scan_class_folders(tmp_path)
    assert classes == ["jump", "walk"]
    assert [(r.path.split("/")[-1], r.label) for r in records] == [("3.mkv", 0), ("1.mp4", 1), ("2.avi", 1)]


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_bytes("\ufeffa.mp4 1\nb.mp4 0\n".encode())
    names = tmp_path / "classes.txt"
    names.write_bytes("\ufeffjump\nrun\n".encode())
    records = read_annotation_list(listing)
    assert [os.path.basename(r.path) for r in records] == ["a.mp4", "b.mp4"]
    assert read_class_names(names) == ["jump", "run"]


def test_a_list_that_is_not_utf8_names_the_file_and_the_encoding(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes("a.mp4 0\ncaf\u00e9.mp4 1\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"list.txt:2: not UTF-8 text \(byte 0xe9 at offset 11\)"):
        read_annotation_list(listing)


@pytest.mark.parametrize("label", ["99999999999999999999", "1000001", "\u00b2", "\u0663"])
def test_absurd_labels_are_rejected_with_file_and_line(tmp_path, label):
    listing = tmp_path / "list.txt"
    listing.write_text(f"a.mp4 0\nb.mp4 {label}\n")
    with pytest.raises(AnnotationError, match=r"list.txt:2: label"):
        read_annotation_list(listing)
