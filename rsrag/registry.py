"""`Registry`: name -> factory, the one small type behind encoders, generators and re-rankers.

A module registers its factories with `@REGISTRY.register("name")`; built-in modules are imported
lazily on the first lookup (so `import rsrag` stays light), and optional ones only when their own
imports succeed.
"""

from __future__ import annotations

import importlib
import threading
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories of one kind of component, by name."""

    def __init__(self, kind: str, builtins: Iterable[str] = (), optional: Iterable[str] = ()) -> None:
        """`kind` names the component in errors ("encoder"); `builtins` are modules that register
        themselves when imported; `optional` ones are skipped when they cannot be imported."""
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._builtins, self._optional = tuple(builtins), tuple(optional)
        self._loaded = False
        self._loading = threading.RLock()  # threads doing a first lookup together wait for the imports
        self._shared: dict[tuple, T] = {}
        self._sharing = threading.Lock()

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: make a class or factory constructible as `create(name, **cfg)`."""

        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[name] = factory
            return factory

        return wrap

    def _load(self) -> None:
        if self._loaded:
            return
        with self._loading:  # re-entrant: the imported modules call register() (and may look names up)
            if self._loaded:
                return
            for module in self._builtins:
                importlib.import_module(module)
            for module in self._optional:
                try:
                    importlib.import_module(module)
                except ImportError:
                    pass
            self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._factories

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as `name`, or a ValueError that lists the known names."""
        self._load()
        if name not in self._factories:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'}")
        return self._factories[name]

    def create(self, name: str, **cfg) -> T:
        return self.get(name)(**cfg)

    def shared(self, name: str, **cfg) -> T:
        """One instance per (name, config) for the process, built once even when threads ask together:
        a model behind a component is loaded once however many requests use it."""
        key = (name, tuple(sorted((k, repr(v)) for k, v in cfg.items())))
        with self._sharing:
            if key not in self._shared:
                self._shared[key] = self.create(name, **cfg)
            return self._shared[key]
