"""``configs/README.md``'s key tables, generated from the config fields' docstrings.

    python -m maskvid.config.docs          # rewrite the tables between the README's markers
    python -m maskvid.config.docs --check  # exit 1 when the README and the code disagree (the tests check too)
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import sys
import textwrap
import typing

from maskvid.config.runs import FinetuneConfig, PretrainConfig
from maskvid.config.sections import PredictionHeadConfig

BEGIN = "<!-- keys: generated from the field docstrings by `python -m maskvid.config.docs`; edit those, not this -->"
END = "<!-- end of generated keys -->"
README = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "README.md")


def field_docs(cls) -> dict[str, str]:
    """``{field: docstring}``: the string literal right after each field of dataclass ``cls``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


def _default(f: dataclasses.Field, owner):
    """The value ``owner`` (an instance with the run's section defaults) has, else the field's own default."""
    if owner is not None:
        return getattr(owner, f.name)
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if value == "":
        return "—"
    return str(value)


def rows(cls, prefix: str = "", instance=None) -> list[tuple[str, str, str]]:
    """``(key, default, meaning)`` of every value of ``cls``, sections expanded; a field without a docstring is an
    error (its documentation would be missing)."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = _default(f, instance)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out += rows(hint, f"{prefix}{f.name}.", default)
            continue
        optional = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        if optional and typing.get_origin(hint) is not tuple:  # a section that may be null: itself, then its keys
            out.append((prefix + f.name, _yaml(default), docs[f.name]))
            out += rows(optional[0], f"{prefix}{f.name}.", default if default is not None else optional[0]())
            continue
        if f.name not in docs:
            raise ValueError(f"{cls.__name__}.{f.name} has no docstring")
        out.append((prefix + f.name, _yaml(default), docs[f.name]))
    return out


def _table(entries) -> list[str]:
    return ["| key | default | meaning |", "|---|---|---|"] + [f"| `{k}` | {d} | {m} |" for k, d, m in entries]


def render() -> str:
    pretrain = rows(PretrainConfig, instance=PretrainConfig())
    heads = rows(PredictionHeadConfig, "heads[].")
    finetune = rows(FinetuneConfig, instance=FinetuneConfig())
    shared = {k for k, _, _ in pretrain}
    changed = [r for r in finetune if r[0] in shared and r not in pretrain]
    own = [r for r in finetune if r[0] not in shared]
    lines = ["### Pretraining (`maskvid pretrain`)", "", *_table(pretrain + heads), "",
             "### Fine-tuning (`maskvid finetune`, `maskvid evaluate`)", "",
             "The same `data`, `model`, `optim`, `train` sections, with these defaults changed:", "",
             *_table(changed), "", "and these keys of its own:", "", *_table(own)]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"configs/README.md lacks the markers {BEGIN!r} … {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(README) as f:
        text = f.read()
    updated = replace_block(text, render())
    if "--check" in argv:
        return 0 if updated == text else 1
    with open(README, "w") as f:
        f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
