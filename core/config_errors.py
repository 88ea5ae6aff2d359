"""Configuration errors that name the key path, and the toolkit that settings classes (the core's
and the plugins') use to report them: :class:`SettingError`, :func:`raise_all`, field checks, and
the cattrs structuring that turns nested errors into ``key.path: what`` lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError


class ConfigError(Exception):
    """The configuration is not usable. ``problems`` lists each one as ``key.path: what``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"{self.source}: configuration error" + ("s" if len(self.problems) > 1 else "")]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class ConfigPath(str):
    """A file or folder named in the configuration; relative paths are made absolute against the
    configuration file's folder when the file is loaded. Plugins use it for their settings too."""

    __slots__ = ()


class SettingError(ValueError):
    """Raised by a settings validator: ``key`` is the field the problem is in.

    Validators of attrs classes used for configuration raise this so that the error message carries
    the full key path (``tenants.t.settings.relay.port: ...``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def raise_all(problems: list[SettingError]) -> None:
    """Raise every problem a settings class found (in ``__attrs_post_init__``), not only the
    first: one :class:`SettingError`, or an :class:`ExceptionGroup` of several."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ExceptionGroup("settings problems", problems)


def _check_fields(instance: Any, problems: list[SettingError] | None = None) -> None:
    """Run every field's check (``metadata["check"]``) and raise all problems found (with
    ``problems`` found by the class itself), so that a table with two wrong values gets two
    messages."""
    problems = list(problems or ())
    for field in attrs.fields(type(instance)):
        check = field.metadata.get("check")
        if check is None:
            continue
        try:
            check(instance, field, getattr(instance, field.name))
        except SettingError as exc:
            problems.append(exc)
    raise_all(problems)


def _checked(default: Any, check: Any) -> Any:
    """A field whose value ``check`` validates in :func:`_check_fields`."""
    return attrs.field(default=default, metadata={"check": check})


_converter = cattrs.Converter(forbid_extra_keys=True)


def _sub_path(path: str, exc: BaseException) -> str:
    for note in getattr(exc, "__notes__", ()):
        name = getattr(note, "name", None)
        if name is not None:
            return f"{path}.{name}" if path else str(name)
        if hasattr(note, "index"):
            index = note.index
            if isinstance(index, str):
                return f"{path}.{index}" if path else index
            return f"{path}[{index}]"
    return path


def _messages(exc: BaseException, path: str) -> list[str]:
    """Turn cattrs' nested validation errors into ``key.path: what`` lines.

    Not :func:`cattrs.transform_error`: it finds the same problems, but writes table names as
    ``tenants['t'].port`` with the path after the message and one line for all unknown keys of a
    table, where siegel's documented form (and ``siegel config check``) is ``tenants.t.port: what``,
    the path as it is written in the TOML file, one line per key."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        problems: list[str] = []
        for inner in exc.exceptions:
            problems += _messages(inner, _sub_path(path, inner))
        return problems
    if isinstance(exc, ForbiddenExtraKeysError):
        return [f"{path}.{key}: unknown key" if path else f"{key}: unknown key"
                for key in sorted(exc.extra_fields)]
    if isinstance(exc, SettingError):
        return [f"{path}.{exc.key}: {exc}" if path else f"{exc.key}: {exc}"]
    if isinstance(exc, KeyError):
        return [f"{path}: required key is missing"]
    if isinstance(exc, ValueError | TypeError):
        text = str(exc) or type(exc).__name__
        if "invalid literal" in text or "could not convert" in text:
            text = f"invalid value ({text})"
        return [f"{path}: {text}"]
    if isinstance(exc, ExceptionGroup):
        return [p for inner in exc.exceptions for p in _messages(inner, path)]
    return [f"{path}: {type(exc).__name__}: {exc}"]


def _converter_for(base_dir: Path) -> cattrs.Converter:
    converter = _converter.copy()

    def config_path(value: Any, _type: Any) -> ConfigPath:
        if not isinstance(value, str):
            raise ValueError(f"expected a path, got {type(value).__name__} {value!r}")
        path = Path(value).expanduser()
        return ConfigPath(path if path.is_absolute() else base_dir / path)

    converter.register_structure_hook(ConfigPath, config_path)
    return converter


def structure(data: Any, cls: type[Any], path: str, base_dir: Path | None = None) -> Any:
    """Structure ``data`` into ``cls`` or raise :class:`ValueError` carrying ``key.path`` lines."""
    converter = _converter_for(base_dir or Path.cwd())
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        raise _StructureError(_messages(exc, path)) from exc


class _StructureError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def deep_merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = deep_merge(merged[key], value)
            else:
                merged[key] = value
    return merged


def _strict_types(data: Any, path: str, problems: list[str], spec: type[Any]) -> None:
    """cattrs converts "25" to 25 and 1 to True; a config file that says port = "25" is a mistake
    worth naming, so scalar types are checked against the attrs field types first."""
    if not isinstance(data, Mapping) or not attrs.has(spec):
        return
    hints = attrs.resolve_types(spec)
    for field in attrs.fields(hints):
        if field.name not in data:
            continue
        value = data[field.name]
        expected = field.type
        where = f"{path}.{field.name}" if path else field.name
        if expected in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        elif expected is int and isinstance(value, float):
            problems.append(f"{where}: expected a whole number, got {value!r}")
        elif expected is bool and not isinstance(value, bool):
            problems.append(f"{where}: expected true or false, got {value!r}")
        elif expected in (str, ConfigPath) and not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        elif attrs.has(expected):
            _strict_types(value, where, problems, expected)
