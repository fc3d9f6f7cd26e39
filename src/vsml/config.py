"""Frozen dataclasses <-> YAML, with `--set a.b.c=value` overrides and clear errors (DESIGN.md, "Layout").

Configs are plain frozen dataclasses (STYLE.md §12: no global config system). This module converts between
them and the nested mappings YAML gives, generically, from the field annotations:

- nested dataclass fields recurse; a missing key takes the field's default;
- scalars are checked, not coerced: `bool` accepts only true/false (not 1 or "yes"), `int` rejects floats and
  bools, `float` accepts ints, `str` accepts only strings;
- `tuple[int, ...]`, `tuple[int, str]`, `list[X]`, `X | None`, `Optional[X]`, `Literal[...]` and `Path` are
  understood; a field typed `dict` / `dict[str, Any]` / `Any` is taken as is;
- an unknown key is an error naming its full dotted path and the valid keys; a bad value is an error naming
  the key, the expected type and the value;
- every integer, also inside a free-form `dict` field (e.g. `learner`), must fit in a signed 32-bit int
  (`check_int32`): JAX holds integers as int32 (x64 off, its default), so a larger count or length overflows
  where it reaches JAX (a raw `OverflowError` after the run folder was written) and a larger seed aliases
  another one (`PRNGKey` keeps its low 32 bits). Checked while the config is read, before anything is written.

Shipped configs (`src/vsml/configs/`, package data) are found by name through `importlib.resources`:
`resolve_config_path("demo_digits")` (`shipped_config_names()` lists them), so they work outside a checkout.

YAML files are read as `yaml.safe_load` reads them, except that a key given twice in one mapping is an error
(PyYAML would keep the last silently). PyYAML follows YAML 1.1, where `1e-3` (no dot) is a *string*; a float
field therefore accepts a string that is a decimal number, and overrides parse numeric-looking strings as
floats, as YAML 1.2 would.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import os
import re
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from vsml.atomic import write_text_atomically

T = TypeVar("T")

# A decimal number as written in a config, e.g. 3, -2.5, .5, 1e-3, 2.5E+4 (but not "nan", "inf" or "0x10").
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ConfigError(ValueError):
    """A config that does not fit its dataclass: unknown key, wrong type, missing or malformed value."""


# The integers JAX holds by default (int32, x64 off): counts, lengths and seeds of a config must fit.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def check_int32(value: int, what: str) -> int:
    """`value` if it fits in a signed 32-bit int, else a `ConfigError` (a ValueError) naming `what` (a config
    key such as 'es.num_pairs', or an argument such as 'evaluate_online(length=...)').

    JAX computes with int32 (x64 off): a larger count or length raises a bare `OverflowError` deep inside a
    jitted function, and a larger seed silently aliases another. Call it where user integers enter, before
    anything is written or compiled."""
    if INT32_MIN <= value <= INT32_MAX:
        return value
    raise ConfigError(
        f"{what}: {_short_repr(value, 30)} is outside the 32-bit integers JAX computes with ({INT32_MIN} to "
        f"{INT32_MAX}); use a smaller value"
    )


def _check_nested_ints(value: Any, key: str) -> None:
    """The int32 check of `check_int32` on every integer inside a free-form mapping or list (its consumer
    validates the rest)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        check_int32(value, f"config key '{key}'")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_nested_ints(v, _join(key, k))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_nested_ints(item, f"{key}[{i}]")


# -------------------------------------------------------------------------------------------- dict -> config


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in get_args(tp))
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(tp))
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _bad_value(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(
        f"config key '{key}': expected {_type_name(tp)}, got {_short_repr(value)} ({type(value).__name__})"
    )


def _convert(tp: Any, value: Any, key: str) -> Any:
    """`value` checked against the annotation `tp` (and converted: lists to tuples, ints to floats, ...)."""
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        return config_from_dict(tp, value, key)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as error:
                # A nested dataclass's own error (unknown key deep inside) says more than "expected X | None".
                if dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                    raise error from None
        raise _bad_value(key, tp, value)
    if origin is Literal:
        # `True == 1`, so compare types too: Literal[1] must not accept True.
        if any(value == arg and type(value) is type(arg) for arg in args):
            return value
        raise _bad_value(key, tp, value)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise _bad_value(key, tp, value)
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(
                f"config key '{key}': expected {_type_name(tp)} ({len(args)} items), got {_short_repr(value)}"
            )
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(arg, item, f"{key}[{i}]") for i, (arg, item) in pairs)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise _bad_value(key, tp, value)
        item_type = args[0] if args else Any
        return [_convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _bad_value(key, tp, value)
        if len(args) == 2 and args[1] is not Any:
            return {k: _convert(args[1], v, _join(key, k)) for k, v in value.items()}
        _check_nested_ints(value, key)
        return dict(value)  # taken as is: its consumer (e.g. a learner registry) validates it
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad_value(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return check_int32(value, f"config key '{key}'")
        raise _bad_value(key, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)  # YAML 1.1 reads `1e-3` as a string (module docstring)
        raise _bad_value(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad_value(key, tp, value)
    if tp is type(None):
        if value is None:
            return None
        raise _bad_value(key, tp, value)
    if tp is Path or (isinstance(tp, type) and issubclass(tp, os.PathLike)):
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise _bad_value(key, tp, value)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _bad_value(key, tp, value)
    raise ConfigError(f"config key '{key}': unsupported field annotation {tp!r} in a config dataclass")


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return get_type_hints(cls)
    except NameError as error:
        raise TypeError(
            f"cannot resolve the field annotations of {cls.__qualname__} ({error}); config dataclasses must "
            f"be importable at module level with their annotation names available at runtime"
        ) from error


def config_from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build the (possibly nested) dataclass `cls` from a mapping, checking every key and value.

    `path` is the dotted key of `data` inside a larger config, used in error messages. Missing keys take
    the dataclass defaults; a `ValueError` from the dataclass's own `__post_init__` checks is re-raised as a
    `ConfigError` naming `path`.
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"config_from_dict needs a dataclass type, got {cls!r}")
    where = f"'{path}'" if path else "the top level"
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config {where}: expected a mapping of keys to values for {cls.__name__}, got "
            f"{_short_repr(data)} ({type(data).__name__})"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        first = unknown[0]
        close = difflib.get_close_matches(str(first), list(fields), n=1)
        hint = f" (did you mean '{_join(path, close[0])}'?)" if close else ""
        raise ConfigError(
            f"unknown config key '{_join(path, first)}'{hint}; valid keys at {where}: {', '.join(fields)}"
        )
    hints = _field_types(cls)
    kwargs = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key '{key}' ({_type_name(hints[name])})")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        section = f"in {where} " if path else ""
        raise ConfigError(f"invalid config {section}({cls.__name__}): {error}") from error


# -------------------------------------------------------------------------------------------- config -> dict


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def config_to_dict(obj: Any) -> dict[str, Any]:
    """The mapping `config_from_dict` would read back: nested dicts, tuples as lists, paths as strings."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {type(obj).__name__}")
    return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}


# ------------------------------------------------------------------------------------------------- overrides


def _numbers_as_floats(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers_as_floats(item) for item in value]
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    return value


def parse_override_value(text: str) -> Any:
    """A `--set` value as YAML reads it, except that `1e-3` is a float (YAML 1.2) rather than a string."""
    try:
        return _numbers_as_floats(yaml.safe_load(text))
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse override value {text!r} as YAML: {error}") from error


def apply_overrides(data: Mapping[str, Any] | None, overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of `data` with each `a.b.c=value` override set; missing intermediate mappings are created.

    Values are parsed by `parse_override_value` (`true`, `1e-3`, `[1, 2]`, `{name: sgd}`, `null` all work).
    Keys are not validated here; `config_from_dict` does that, naming the dotted key.
    """
    result = copy.deepcopy(dict(data or {}))
    for override in overrides:
        if not isinstance(override, str) or "=" not in override:
            raise ConfigError(f"malformed override {override!r}: expected key.path=value, e.g. es.sigma=0.05")
        dotted, text = override.split("=", 1)
        dotted = dotted.strip()
        parts = dotted.split(".")
        if not dotted or any(not part for part in parts):
            raise ConfigError(f"malformed override {override!r}: the key {dotted!r} has an empty part")
        value = parse_override_value(text)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"cannot set '{dotted}': '{prefix}' is {_short_repr(child)}, not a mapping")
            node = child
        node[parts[-1]] = value
    return result


# ----------------------------------------------------------------------------------------------------- files


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # The mapping's own keys only: a merge (`<<: *base`) may be overridden by a key of the mapping itself.
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: SafeLoader's own check below reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML file (an empty file is an empty mapping), read as `yaml.safe_load` does except that
    a key given twice in one mapping is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys to values at the top level, got "
            f"{type(data).__name__}"
        )
    return data


# ------------------------------------------------------------------------------------------- shipped configs

_SHIPPED_PREFIX = "configs/"  # how the configs were named in a checkout before they became package data


def shipped_configs_dir() -> Path:
    """The folder of the configs that ship with the package (`vsml/configs/`, found by importlib.resources)."""
    return Path(str(importlib.resources.files("vsml") / "configs"))


def shipped_config_names() -> list[str]:
    """The shipped configs by the name `resolve_config_path` knows them: their path under `vsml/configs/`
    without `.yaml` (`demo_digits`, `fig8/all`, `cloning/backprop`), sorted."""
    root = shipped_configs_dir()
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """The YAML file a command was given: an existing file as it is, else a shipped config by name
    (`demo_digits`, `demo_digits.yaml`, `fig8/all`; the old checkout path `configs/demo_digits.yaml` too).

    A file in the current directory wins over a shipped config of the same name. Raises `FileNotFoundError`
    naming the shipped configs when it is neither."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.as_posix()
    if not path.is_absolute():
        name = name.removeprefix(_SHIPPED_PREFIX).removesuffix(".yaml")
        shipped = shipped_configs_dir() / f"{name}.yaml"
        if name and ".." not in Path(name).parts and shipped.is_file():
            return shipped
    names = shipped_config_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise FileNotFoundError(
        f"config file not found: {path}; not a shipped config either{hint}. Pass a YAML file or the name of a "
        f"shipped config: {', '.join(names) or 'none found in this installation'}"
    )


def load_config(cls: type[T], path: str | os.PathLike, overrides: Iterable[str] = ()) -> T:
    """Read the YAML file `path` (or the shipped config of that name: `resolve_config_path`), apply
    `a.b.c=value` overrides and build the dataclass `cls`.

    Raises `FileNotFoundError` for a missing file and `ConfigError` (a `ValueError`) for everything else.
    """
    path = resolve_config_path(path)
    data = apply_overrides(read_yaml_mapping(path), overrides)
    try:
        return config_from_dict(cls, data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def dump_config(obj: Any, path: str | os.PathLike) -> Path:
    """Write the dataclass `obj` as YAML, field order kept; `load_config` reads it back to an equal object."""
    text = yaml.safe_dump(config_to_dict(obj), sort_keys=False, default_flow_style=False)
    # Write-then-rename so a crash never leaves a truncated config next to a run's checkpoints.
    return write_text_atomically(path, text)
