"""State that survives: typed attributes on accounts and characters, in the database.

An attribute is a named value on an owner (``("account", 12)``,
``("character", 7)``): any value cattrs can turn into JSON and back (numbers,
strings, lists, dicts, attrs classes, enums, ...; never pickle)::

    attributes = Attributes(store)
    await attributes.load("character", 7)             # at login, once
    gold = attributes.get("character", 7, "gold", int, default=0)
    attributes.set("character", 7, "gold", gold + 10)  # at once, in memory
    await attributes.saved()                          # if it must be on disk now

Reads come from memory; writes go to memory at once and to the database in
batches, in a worker thread: everything set while one batch was written
goes in the next. :meth:`Attributes.run` does the writing and writes what is
left when it stops; a game flushes before a reload (:meth:`flush`). So what
an author stores is there after a reload, a full restart and, once
:meth:`saved` has returned, a crash.

Error handling:
    A value cattrs cannot unstructure raises at :meth:`set` (nothing is
    stored); a stored value that no longer fits the type asked for raises
    at :meth:`get`. A failed batch is logged and written again with the next.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol, TypeVar

import cattrs
import trio

__all__ = ["AttributeStore", "Attributes"]

log = logging.getLogger("trio_mud.attributes")

T = TypeVar("T")

_converter = cattrs.Converter()


class AttributeStore(Protocol):
    """Where attributes are kept (the game's :class:`~trio_mud.game.store.Store`)."""

    async def attributes(self, owner: str) -> dict[str, str]:
        """Every attribute of ``owner``, as stored (JSON text by key)."""
        ...

    async def write_attributes(self, changes: dict[tuple[str, str], str | None]) -> None:
        """Store ``(owner, key) -> JSON`` (None deletes), in one transaction."""
        ...


def _owner(kind: str, ident: int | str) -> str:
    return f"{kind}:{ident}"


class Attributes:
    """Attributes of every loaded owner, kept in memory and written in batches."""

    def __init__(self, store: AttributeStore) -> None:
        self.store = store
        self._values: dict[str, dict[str, Any]] = {}
        self._dirty: dict[tuple[str, str], str | None] = {}
        self._wanted = trio.Event()
        #: Set (and replaced) each time a batch is on disk.
        self._written = trio.Event()
        self._writing = False

    async def load(self, kind: str, ident: int | str) -> None:
        """Read every attribute of an owner (again, if loaded before)."""
        owner = _owner(kind, ident)
        stored = await self.store.attributes(owner)
        values = {key: json.loads(text) for key, text in stored.items()}
        # What was set but is not written yet wins over what was read.
        for (dirty_owner, key), text in self._dirty.items():
            if dirty_owner == owner:
                if text is None:
                    values.pop(key, None)
                else:
                    values[key] = json.loads(text)
        self._values[owner] = values

    def loaded(self, kind: str, ident: int | str) -> bool:
        """Whether the owner's attributes are in memory (see :meth:`load`)."""
        return _owner(kind, ident) in self._values

    def get(
        self, kind: str, ident: int | str, key: str, type_: type[T] | Any = Any, default: Any = None
    ) -> Any:
        """The value of ``key``, as ``type_`` (structured by cattrs), or ``default``."""
        values = self._values.get(_owner(kind, ident))
        if values is None:
            raise KeyError(f"attributes of {kind} {ident} are not loaded (await load() first)")
        if key not in values:
            return default
        raw = values[key]
        return raw if type_ is Any else _converter.structure(raw, type_)

    def set(self, kind: str, ident: int | str, key: str, value: Any) -> None:
        """Set ``key`` now (in memory); it is written with the next batch."""
        owner = _owner(kind, ident)
        raw = _converter.unstructure(value)
        text = json.dumps(raw)  # raises now if it cannot be stored
        self._values.setdefault(owner, {})[key] = json.loads(text)
        self._dirty[(owner, key)] = text
        self._wanted.set()

    def delete(self, kind: str, ident: int | str, key: str) -> None:
        """Remove ``key`` now (in memory); the deletion is written with the next batch."""
        owner = _owner(kind, ident)
        self._values.get(owner, {}).pop(key, None)
        self._dirty[(owner, key)] = None
        self._wanted.set()

    def forget(self, kind: str, ident: int | str) -> None:
        """Drop an owner from memory (what is unsaved is still written)."""
        self._values.pop(_owner(kind, ident), None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until cancelled; then write what is left."""
        task_status.started()
        try:
            while True:
                await self._wanted.wait()
                await self.flush()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()

    async def flush(self) -> None:
        """Write everything set so far, in one transaction."""
        while self._writing:  # one batch at a time, in order
            await self._written.wait()
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        self._wanted = trio.Event()
        self._writing = True
        try:
            await self.store.write_attributes(batch)
        except Exception:
            log.exception("writing %d attributes failed; will retry", len(batch))
            for item, text in batch.items():
                self._dirty.setdefault(item, text)
            self._wanted.set()
        finally:
            self._writing = False
            self._written.set()
            self._written = trio.Event()

    async def saved(self) -> None:
        """Return once everything set so far is in the database."""
        while self._dirty or self._writing:
            await self.flush()
