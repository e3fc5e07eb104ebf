"""Named entries of one kind (data set readers, face detectors, landmark annotators, loaders of
images kept inside other files): each module registers its entry under a name, and callers look
entries up by name, with an error that lists the names known.

A package's __init__ imports its built-in modules, so importing any part of it registers them
all: a new entry is one new module and its line in that import list.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from partfer.data_prep.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> entry. `what` names the kind in messages ("face detector"); `known` introduces the
    list of names in the unknown-name error ("known", "known layouts")."""

    def __init__(self, what: str, known: str = "known", unique: bool = False):
        self.what, self.known, self.unique = what, known, unique
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register `entry` as `name`; with unique=True a second, different entry is a ValueError."""
        if self.unique and name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """`@registry.decorator(name)`: register the decorated function or class as `name`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        """The entry of `name`; UnknownNameError naming the known ones when there is none."""
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.what} {name!r}; {self.known}: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) in name order."""
        return ((name, self._entries[name]) for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries
