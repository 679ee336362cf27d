"""YAML run configs: load a packaged or user file and apply `--set key.sub=value` overrides."""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
CONFIG_DIR = Path(__file__).parents[1] / "configs"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: `5e-5` is a number, not the string '5e-5'."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Load YAML text with numbers such as `1e-4` read as floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


class ConfigError(ValueError):
    """A config file or override that cannot be used."""


def from_section(cls: type[T], section: dict, name: str) -> T:
    """Build a settings dataclass from a config section.

    Unknown keys are an error that lists the known ones; every value is checked against its field's type
    (`float` takes integers too), so `--set train.lr_generator=abc` fails here, in one line, not inside torch.
    """
    if not isinstance(section, dict):
        raise ConfigError(f"{name} must be a mapping of settings, got {section!r}")
    known = set(cls.__dataclass_fields__)
    unknown = set(section) - known
    if unknown:
        raise ConfigError(f"unknown {name} settings {sorted(unknown)}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for key, value in section.items():
        if key in hints and not conforms(value, hints[key]):
            raise ConfigError(f"{name}.{key}={value!r}: expected {describe(hints[key])}")
    return cls(**section)


def conforms(value: Any, hint: Any) -> bool:
    """Whether a parsed YAML value fits a field type (scalars, None, unions, lists, tuples, dicts)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and Ellipsis not in args:
            return len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args, strict=True))
        return all(conforms(v, args[0]) for v in value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    return True  # other classes (paths, nested settings) are checked by their users


def describe(hint: Any) -> str:
    """A field type in a user's words: `float | None` -> 'a number or null'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    words = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "a mapping", list: "a list", tuple: "a list"}
    if hint in words:
        return words[hint]
    if origin in (list, tuple):
        if origin is tuple and args and Ellipsis not in args:
            return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def resolve_config(name_or_path: str) -> Path:
    """A path, or the name of a packaged config (with or without `configs/` and `.yaml`)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name  # names may hold dots
    packaged = CONFIG_DIR / (stem + ".yaml")
    if packaged.exists():
        return packaged
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"no config {name_or_path!r}; give a YAML path or one of the packaged configs {names}")


def merge_config(base: dict, child: dict) -> dict:
    """`child` laid over `base`: sections merge key by key, any other value (lists too) replaces the base's."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_file(name_or_path: str, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One config file with its `base:` chain resolved (a config may name another to start from)."""
    path = resolve_config(name_or_path)
    if path in seen:
        raise ConfigError(f"config {path} is its own base (chain: {' -> '.join(map(str, (*seen, path)))})")
    try:
        cfg = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from err
    if not isinstance(cfg, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(cfg).__name__}")
    base = cfg.pop("base", None)
    if base is None:
        return cfg
    if not isinstance(base, str):
        raise ConfigError(f"config {path}: base must be a config name or path, got {base!r}")
    beside = path.parent / base  # a base next to the file wins over the same name elsewhere
    return merge_config(read_config_file(str(beside) if beside.is_file() else base, (*seen, path)), cfg)


def load_config(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a YAML config (with its `base:` chain) and apply `key.sub=value` overrides (values parsed as YAML)."""
    cfg = read_config_file(name_or_path)  # freshly parsed: overrides may write into it
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section of the config")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"override {item!r}: unknown key {parts[-1]!r}; known: {sorted(node)}")
        value, old = parse_yaml(raw), node[parts[-1]]
        for kind in (bool, float):  # a number stays a number, a switch a switch (null always allowed)
            if value is not None and conforms(old, kind) and not conforms(value, kind):
                raise ConfigError(f"{key}={value!r}: expected {describe(kind)}")
        node[parts[-1]] = value
    return cfg
