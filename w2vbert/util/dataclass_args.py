"""Command-line flags generated from a frozen config dataclass, so each flag is defined once.

A field ``max_bad_steps: int = field(default=20, metadata={"help": "..."})`` becomes
``--max-bad-steps`` (``int``); a ``bool`` field ``tensorboard`` becomes ``--tensorboard/--no-tensorboard``.
a ``tuple[X, ...]`` field takes one or more values (``nargs="+"``).
``metadata["flag"] = False`` keeps a field off the command line; ``metadata["choices"]`` restricts values.
:func:`flag` writes such a field in one line: ``max_bad_steps: int = flag(20, "...")``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def flag(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with a default and its command-line ``help`` (plus ``choices``, ``flag``)."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """``(type, optional)`` for ``X``, ``X | None`` and ``Optional[X]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"Config field type must be X or X | None, but is {tp} instead.")
        return args[0], True
    return tp, False


def _optional(conv: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "") else conv(text)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    defaults: dict[str, Any] | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Add one flag per field of the dataclass ``cls`` but those in ``skip``; ``defaults`` override
    the fields' defaults."""
    defaults = defaults or {}
    unknown = set(defaults) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(
            f"`defaults` must name fields of {cls.__name__}, but has {sorted(unknown)}."
        )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag", True) or f.name in skip:
            continue
        if f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        tp, optional = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"default": default, "help": f.metadata.get("help", "")}
        if default is not None and tp is not bool:
            kwargs["help"] += f" (default: {default})"
        elif tp is bool and default is not None:  # argparse (3.11+) shows no default for --x/--no-x
            kwargs["help"] += f" (default: {_flag(f.name) if default else '--no-' + _flag(f.name)[2:]})"
        if typing.get_origin(tp) is tuple:  # tuple[X, ...]: one or more values
            item, *rest = typing.get_args(tp)
            if rest != [Ellipsis]:
                raise TypeError(
                    f"Config field {cls.__name__}.{f.name} must be tuple[X, ...], but is {tp}."
                )
            kwargs["nargs"] = "+"
            tp, tuple_of = item, True
        else:
            tuple_of = False
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            conv = {int: int, float: float, str: str, Path: Path}.get(tp)
            if conv is None:
                raise TypeError(f"Config field {cls.__name__}.{f.name} has unsupported type {tp}.")
            kwargs["type"] = _optional(conv) if optional and not tuple_of else conv
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(_flag(f.name), dest=f.name, **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the parsed flags of :func:`add_dataclass_arguments` (plus ``overrides``)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else value  # nargs="+"
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a (possibly nested) config dataclass; paths become strings."""

    def conv(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    return conv(dataclasses.asdict(config))


def add_override_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    skip: tuple[str, ...] = (),
) -> None:
    """One flag per field of ``cls`` with default None ("keep the preset's value").

    Used for model configs whose defaults come from a preset; :func:`overrides_from_args` collects
    the flags that were given. ``Literal`` fields get ``choices``; bools are ``--x/--no-x``.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, _ = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"default": None, "help": f"override the preset's {f.name}"}
        if typing.get_origin(tp) is typing.Literal:
            kwargs.update(type=str, choices=list(typing.get_args(tp)))
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp in (int, float, str):
            kwargs.update(type=tp, metavar=tp.__name__.upper())
        else:
            continue  # not settable from the command line
        parser.add_argument(_flag(f.name), dest=f"override_{f.name}", **kwargs)


def overrides_from_args(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """``{field: value}`` for the override flags of ``cls`` that were given."""
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f"override_{f.name}", None)
        if value is not None:
            out[f.name] = value
    return out
