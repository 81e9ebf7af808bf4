"""Reading configuration: the conf folder (also from a --py-files zip), YAML files, ``--set``
overrides, merged and validated into :class:`ShopLakeConfig`; errors name the file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from common.config.folders import NOT_ENV_FILES, find_conf_dir
from common.config.model import ShopLakeConfig
from common.errors import ConfigError

FREE_FORM_MAPS = ("spark.conf",)


def read_yaml(path: str | Path, *, key: str | None = None, hint: str = "") -> dict[str, Any]:
    """The mapping at the top of one YAML config file; the one place config YAML is read.

    Args:
        path: the file.
        key: the config key that named the file (e.g. ``campaign.definitions``), named
            when the file is missing.
        hint: said after a missing file, e.g. which files exist.

    Raises:
        ConfigError: one line naming the file (and ``key``) when the file is missing,
            not valid YAML (with line and column), or not a mapping at the top level.
    """
    path = Path(path)
    if not path.is_file():
        where = f"{key}: " if key else ""
        raise ConfigError(f"{where}file {path} not found" + (f" ({hint})" if hint else ""))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_yaml(path: str | Path, model: type[ModelT], *, what: str, key: str | None = None, hint: str = "") -> ModelT:
    """Read one YAML config file (:func:`read_yaml`) and validate it into ``model``.

    Args:
        what: what the file holds, for messages (``campaign definitions``).

    Raises:
        ConfigError: ``invalid <what> (<file>): <key path>: <problem>`` naming every bad
            key, or a problem of :func:`read_yaml`.
    """
    data = read_yaml(path, key=key, hint=hint)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} ({path}): {describe_validation_error(exc)}") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``, the value read as YAML (``4`` is an int)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. lake.root=/tmp/lake")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    key = key.strip()
    parts = key.split(".")
    # Keys of free-form maps contain dots themselves (spark.conf.spark.sql.x).
    for prefix in FREE_FORM_MAPS:
        if key.startswith(prefix + "."):
            parts = [*prefix.split("."), key[len(prefix) + 1 :]]
    node: Any = value
    for part in reversed(parts):
        node = {part: node}
    return node


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every bad key: ``lake.rooot: unknown key; generate.users: ... (got 'x')``."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
            continue
        value = err.get("input")
        shown = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) or value is None else ""
        problems.append(f"{key}: {err['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(problems)


def load_config(
    env: str = "local",
    overrides: list[str] | tuple[str, ...] = (),
    conf_dir: str | Path | None = None,
) -> ShopLakeConfig:
    """Load and validate the configuration for ``env``.

    Raises:
        ConfigError: naming the file and key when anything is unknown or mistyped.
    """
    folder = find_conf_dir(conf_dir)
    env_file = folder / f"{env}.yaml"
    if not env_file.is_file():
        # Not environments: the base, quality rules, campaign definitions, tags.
        known = sorted(p.stem for p in folder.glob("*.yaml") if p.stem not in NOT_ENV_FILES)
        raise ConfigError(f"unknown env {env!r}: no {env_file} (known: {', '.join(known)})")
    data = deep_merge(read_yaml(folder / "base.yaml"), read_yaml(env_file))
    for text in overrides:
        data = deep_merge(data, parse_override(text))
    data["env"] = env
    data["conf_dir"] = str(folder)
    sources = f"{folder / 'base.yaml'} + {env_file.name}" + (" + --set" if overrides else "")
    try:
        return ShopLakeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid config ({sources}): {describe_validation_error(exc)}") from None
