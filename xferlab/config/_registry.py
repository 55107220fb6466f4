"""The registries' shared machinery: `ConfigError`, `close_match`, `Range` and `Registry`.

Every option of an ablation axis (a freezing strategy, a head, a data kind, an optimizer, …) is
one registered definition holding its behaviour and the checks of its own keys; choice lists,
validation messages and "did you mean" come from here. Torch-free, so the CLI answers a bad
config before torch loads.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from omegaconf import DictConfig, OmegaConf

T = TypeVar("T")


class ConfigError(ValueError):
    """A user error in the configuration: one line per problem, each naming key, value and fix."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else problems
        super().__init__("\n".join(self.problems))


def close_match(value: object, allowed: list[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' when a close match exists (ignoring case), else ''."""
    by_lower = {name.lower(): name for name in allowed}
    match = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[match[0]]!r}?)" if match else ""


def select(cfg: Any, dotted: str) -> Any:
    """cfg.a.b for 'a.b' (a config node, or any object with those attributes)."""
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@dataclass(frozen=True)
class Range:
    """The check of one of an option's own keys: `ok(value)`, or else `fix` says what to use."""

    ok: Callable[[Any], bool]
    fix: str
    # `fix` is the whole line, with {value} for the value's repr ("data.root is not set: …")
    line: bool = False


class Registry(Generic[T]):
    """The options of one axis by name, each registered once with the checks of its own keys.

    `key` is the config key that names the option (e.g. 'freeze.strategy'); an option's own keys
    live beside it in the same section (freeze.k, freeze.every, …). Every registry made is in
    `Registry.ALL`, which `config.validate` walks.
    """

    ALL: ClassVar[list[Registry[Any]]] = []

    def __init__(self, key: str, error: type[ValueError] = ConfigError):
        self.key = key
        self.error = error  # what an unknown name raises (a user error: one line)
        self.section = key.rpartition(".")[0]
        self._options: dict[str, T] = {}
        self._checks: dict[str, dict[str, Range]] = {}
        Registry.ALL.append(self)

    def register(self, name: str, **checks: Range) -> Callable[[T], T]:
        """Decorator: `option` is `name`; `checks` maps its own keys to their ranges."""

        def add(option: T) -> T:
            if name in self._options:
                raise ValueError(f"{self.key}={name!r} is registered twice")
            self._options[name], self._checks[name] = option, checks
            return option

        return add

    def names(self) -> tuple[str, ...]:
        return tuple(self._options)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._options.items())

    def name_of(self, option: T) -> str:
        return next(name for name, known in self._options.items() if known is option)

    def __iter__(self) -> Iterator[str]:
        return iter(self._options)

    def __len__(self) -> int:
        return len(self._options)

    def __contains__(self, name: object) -> bool:
        return name in self._options

    def __getitem__(self, name: str) -> T:
        if name not in self._options:
            raise self.error(self._unknown(name))
        return self._options[name]

    def own_keys(self, name: str) -> tuple[str, ...]:
        """The keys of the dataclass option `name` (its fields), in its config section."""
        option = self[name]
        assert dataclasses.is_dataclass(option)
        return tuple(f.name for f in dataclasses.fields(option) if f.init)

    def keys_of(self, name: str) -> tuple[str, ...]:
        """`own_keys`, or none for an option that is no dataclass (a function, a class)."""
        return self.own_keys(name) if dataclasses.is_dataclass(self[name]) else ()

    def foreign_keys(self, name: str) -> set[str]:
        """The other options' own keys that `name` lacks: keys in this section that do nothing
        while `name` is chosen (glyphs' `data.charset` for `data.kind=digits`)."""
        return {key for other in self._options for key in self.keys_of(other)} - set(
            self.keys_of(name))

    def build(self, name: str, section: Any) -> Any:
        """The dataclass option `name`, made from its own keys (its fields) in `section`."""
        values = (OmegaConf.to_container(section, resolve=True)
                  if isinstance(section, DictConfig) else section)
        assert isinstance(values, Mapping)
        option: Any = self[name]  # a dataclass (own_keys asserts it), so callable
        return option(**{key: values[key] for key in self.own_keys(name)})

    def problems(self, cfg: Any) -> list[str]:
        """The chosen option is registered, and each of its own keys is in its range."""
        name = select(cfg, self.key)
        if name not in self._options:
            return [self._unknown(name)]
        section = select(cfg, self.section) if self.section else cfg
        prefix = f"{self.section}." if self.section else ""
        return [check.fix.format(value=repr(select(section, key))) if check.line
                else f"{prefix}{key}={select(section, key)!r} is out of range: {check.fix}"
                for key, check in self._checks[name].items() if not check.ok(select(section, key))]

    def _unknown(self, name: object) -> str:
        names = self.names()
        return f"{self.key}={name!r} is not one of {', '.join(names)}{close_match(name, names)}"
