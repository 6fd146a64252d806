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
        #: Set and not yet being written, and being written now.
        self._dirty: dict[tuple[str, str], str | None] = {}
        self._writing: dict[tuple[str, str], str | None] | None = None
        self._wanted = trio.Event()
        #: Changes made so far, and how many of them are on disk.
        self._changes = 0
        self._stored = 0
        #: Set (and replaced) each time a batch ends, written or not.
        self._batch_over = trio.Event()

    async def load(self, kind: str, ident: int | str) -> None:
        """Read every attribute of an owner (again, if loaded before)."""
        owner = _owner(kind, ident)
        stored = await self.store.attributes(owner)
        values = {key: json.loads(text) for key, text in stored.items()}
        # What was set but is not on disk yet (or was not when the read ran)
        # wins over what was read.
        for pending in (self._writing or {}, self._dirty):
            for (pending_owner, key), text in pending.items():
                if pending_owner == owner:
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
        self._changes += 1
        self._wanted.set()

    def delete(self, kind: str, ident: int | str, key: str) -> None:
        """Remove ``key`` now (in memory); the deletion is written with the next batch."""
        owner = _owner(kind, ident)
        self._values.get(owner, {}).pop(key, None)
        self._dirty[(owner, key)] = None
        self._changes += 1
        self._wanted.set()

    def forget(self, kind: str, ident: int | str) -> None:
        """Drop an owner from memory (what is unsaved is still written)."""
        self._values.pop(_owner(kind, ident), None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until cancelled; then write what is left.

        A batch that fails is logged and tried again after a pause that
        doubles each time (up to a minute).
        """
        task_status.started()
        pause = 0.5
        try:
            while True:
                await self._wanted.wait()
                if await self.flush():
                    pause = 0.5
                else:
                    await trio.sleep(pause)
                    pause = min(60.0, pause * 2)
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()

    async def flush(self) -> bool:
        """Write everything set so far, in one transaction; whether it worked."""
        while self._writing is not None:  # one batch at a time, in order
            await self._batch_over.wait()
        if not self._dirty:
            return True
        batch, self._dirty = self._dirty, {}
        upto = self._changes
        self._wanted = trio.Event()
        self._writing = batch
        try:
            await self.store.write_attributes(batch)
        except Exception:
            log.exception("writing %d attributes failed; will retry", len(batch))
            for item, text in batch.items():
                self._dirty.setdefault(item, text)  # newer changes stay newer
            self._wanted.set()
            return False
        else:
            self._stored = max(self._stored, upto)
            return True
        finally:
            self._writing = None
            self._batch_over.set()
            self._batch_over = trio.Event()

    async def saved(self) -> None:
        """Return once everything set before this call is in the database.

        Changes made meanwhile (by other sessions) do not hold it up. While
        the database refuses writes, it waits for :meth:`run` to get them in.
        """
        target = self._changes
        while self._stored < target:
            if self._writing is None and not await self.flush():
                await self._batch_over.wait()  # run() retries after its pause
            elif self._writing is not None:
                await self._batch_over.wait()
