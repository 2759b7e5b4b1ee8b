"""Annotation lists as VideoMAE and mmaction write them, folder-per-class trees, and class-name files.

A list has one video per line, fields separated by whitespace or, when a line holds a comma, by commas
(use commas for paths with spaces). By field count:

=========  ======================================  ======================================
fields     meaning                                 typical source
=========  ======================================  ======================================
1          ``path``                                an unlabelled pretraining list
2          ``path label``                          VideoMAE / mmaction video lists
3          ``path num_frames label``               mmaction raw-frame style lists
4          ``path start num_frames label``         a segment of a longer video
=========  ======================================  ======================================

Labels are integers, or class names when a class-names file is given. Blank lines and ``#`` comments are
ignored, and so is a header line whose last field is ``label``. Relative paths are joined to ``root`` (default: the
list's own folder). Every malformed line is reported, with its number, before any video is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from maskvid.errors import AnnotationError, ConfigError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
UNLABELLED = -1
MAX_LABEL = 1_000_000  # more classes than any action dataset has: a larger "label" is a misread column


@dataclass(frozen=True)
class VideoRecord:
    """One entry of a dataset: a file, its label (-1 when unlabelled) and optionally a frame range in it."""

    path: str
    label: int = UNLABELLED
    start: int = 0
    num_frames: int | None = None


def read_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark, as Windows tools write, is dropped); an unreadable or
    non-UTF-8 file is an AnnotationError naming the file, the line and the encoding problem."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AnnotationError(path, [(0, f"cannot read: {e.strerror or e}")]) from e
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise AnnotationError(path, [(line, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                                            "save the file as UTF-8")]) from None


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per line; the line number (from 0) is the label."""
    path = os.fspath(path)
    lines = [line.strip() for line in read_lines(path)]
    names = [line for line in lines if line]
    seen, problems = set(), []
    for number, name in enumerate(lines, 1):
        if name and name in seen:
            problems.append((number, f"duplicate class name {name!r}"))
        seen.add(name)
    if not names:
        problems.append((1, "no class names"))
    if problems:
        raise AnnotationError(path, problems)
    return names


def _parse_label(field: str, class_names: list[str] | None) -> int:
    if field.isascii() and field.lstrip("-").isdigit():  # str.isdigit alone takes "²" and other scripts' digits
        label = int(field)
        if label < 0:
            raise ValueError(f"label {label} is negative")
        if label > MAX_LABEL:
            raise ValueError(f"label {label} is implausibly large (more than {MAX_LABEL} classes): a misread column?")
        if class_names is not None and label >= len(class_names):
            raise ValueError(f"label {label} >= number of classes ({len(class_names)})")
        return label
    if class_names is not None and field in class_names:
        return class_names.index(field)
    known = "" if class_names is None else " and not a known class name"
    raise ValueError(f"label {field!r} is not an integer{known}")


def _parse_count(field: str, what: str, minimum: int) -> int:
    if not (field.isascii() and field.isdigit()) or int(field) < minimum:
        raise ValueError(f"{what} {field!r} is not an integer >= {minimum}")
    return int(field)


def _parse_line(fields: list[str], class_names: list[str] | None, require_labels: bool) -> tuple:
    if not fields[0]:
        raise ValueError("empty path")
    if len(fields) == 1:
        if require_labels:
            raise ValueError("no label (a labelled list needs 'path label')")
        return fields[0], UNLABELLED, 0, None
    if len(fields) == 2:
        return fields[0], _parse_label(fields[1], class_names), 0, None
    if len(fields) == 3:
        return fields[0], _parse_label(fields[2], class_names), 0, _parse_count(fields[1], "num_frames", 1)
    if len(fields) == 4:
        start = _parse_count(fields[1], "start", 0)
        return fields[0], _parse_label(fields[3], class_names), start, _parse_count(fields[2], "num_frames", 1)
    raise ValueError(f"{len(fields)} fields; expected 1-4 (path [start] [num_frames] label)")


def read_annotation_list(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    class_names: list[str] | None = None,
    require_labels: bool = True,
) -> list[VideoRecord]:
    """Parse a list into records; raises ``AnnotationError`` naming every bad line."""
    path = os.fspath(path)
    root = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(path))
    lines = read_lines(path)
    records, problems = [], []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [x.strip() for x in line.split(",")] if "," in line else line.split()
        if number == 1 and fields[-1].lower() in ("label", "labels", "class"):
            continue  # a CSV header
        try:
            file, label, start, count = _parse_line(fields, class_names, require_labels)
        except ValueError as e:
            problems.append((number, str(e)))
            continue
        records.append(VideoRecord(os.path.join(root, file), label, start, count))
    if not records and not problems:
        problems.append((1, "the list has no entries"))
    if problems:
        raise AnnotationError(path, problems)
    return records


def scan_class_folders(root: str | os.PathLike, extensions=VIDEO_EXTENSIONS) -> tuple[list[VideoRecord], list[str]]:
    """``root/<class>/<video>`` trees: classes are the sorted sub-folder names."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise AnnotationError(root, [(0, "not a directory")])
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    records = [
        VideoRecord(os.path.join(root, name, file), label)
        for label, name in enumerate(classes)
        for file in sorted(os.listdir(os.path.join(root, name)))
        if file.lower().endswith(extensions)
    ]
    if not records:
        raise AnnotationError(root, [(0, f"no videos ({', '.join(extensions)}) in class sub-folders")])
    return records, classes


def read_label_map(path: str | None, val_classes: str | None = None,
                   classes: str | None = None) -> dict[int, int] | None:
    """Domain adaptation's class map (``data.class_map``): one ``val_class model_class`` pair per line, each a class
    name (of ``val_classes`` / ``classes``, the class-names files) or an integer; None without a map."""
    if not path:
        return None
    if not os.path.isfile(path):
        raise ConfigError("data.class_map", f"{path}: no such file")
    val_names = read_class_names(val_classes) if val_classes else None
    model_names = read_class_names(classes) if classes else None
    mapping = {}
    for number, line in enumerate(read_lines(path), 1):
        parts = line.split("#")[0].replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ConfigError("data.class_map", f"{path}:{number}: expected 'val_class model_class'")
        mapping[_class_index(parts[0], val_names, path, number)] = _class_index(parts[1], model_names, path, number)
    return mapping


def _class_index(text: str, names: list[str] | None, path: str, number: int) -> int:
    if text.isascii() and text.isdigit():
        return int(text)
    if names is None or text not in names:
        raise ConfigError("data.class_map", f"{path}:{number}: unknown class {text!r}")
    return names.index(text)
