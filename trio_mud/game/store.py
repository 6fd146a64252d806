"""Accounts and characters in SQLite.

One connection, used by one worker thread at a time (a capacity limiter of
one serialises every call), so the event loop never touches the database.

Resource handling:
    :meth:`Store.open` is an async context manager; the connection is closed
    when it exits.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio
from attrs import frozen

T = TypeVar("T")

SCHEMA_VERSION = 3

#: Version 3: attributes, what a game keeps on accounts and characters.
_SCHEMA_3 = """
CREATE TABLE attributes (
    owner TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
"""

#: Version 2: bans, and the login and account-creation events throttles count.
_SCHEMA_2 = """
CREATE TABLE bans (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('address', 'account')),
    value      TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    banned_by  TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (kind, value)
);
CREATE TABLE auth_events (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    at   REAL NOT NULL
);
CREATE INDEX auth_events_key ON auth_events(kind, key, at);
"""

_SCHEMA = (
    """
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    name_key      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    last_login    REAL
);
CREATE TABLE characters (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    name_key   TEXT NOT NULL UNIQUE,
    location   TEXT NOT NULL
);
CREATE INDEX characters_account ON characters(account_id);
"""
    + _SCHEMA_2
    + _SCHEMA_3
)


class NameTaken(Exception):
    """An account or character by that name exists already."""


class StoreError(Exception):
    """The database is not one this version of trio_mud can use."""


@frozen
class AccountRecord:
    """An account as stored."""

    id: int
    name: str
    password_hash: str
    is_admin: bool


@frozen
class CharacterRecord:
    """A character as stored."""

    id: int
    account_id: int
    name: str
    location: str


def name_key(name: str) -> str:
    """The form names are compared in: case-insensitive."""
    return name.casefold()


@frozen
class Ban:
    """A ban as stored: an address or network, or an account's name key."""

    id: int
    kind: str  # "address" (an address or network) or "account" (a name key)
    value: str
    reason: str
    banned_by: str
    created_at: float


class Store:
    """Async access to the game database. Create it with :meth:`open`."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[Store]:
        """Open (creating if needed) the database at ``path``."""
        connection = await trio.to_thread.run_sync(_connect, path)
        store = cls(connection)
        try:
            yield store
        finally:
            with trio.CancelScope(shield=True):
                await store._run(connection.close)

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(func, *args, limiter=self._limiter)

    # -- accounts ------------------------------------------------------------------

    async def create_account(
        self, name: str, password_hash: str, location: str
    ) -> tuple[AccountRecord, CharacterRecord]:
        """Create an account and its character of the same name.

        Raises:
            NameTaken: the name is in use (compared case-insensitively).
        """
        return await self._run(self._create_account, name, password_hash, location)

    def _create_account(
        self, name: str, password_hash: str, location: str
    ) -> tuple[AccountRecord, CharacterRecord]:
        key = name_key(name)
        try:
            with self._db:
                cur = self._db.execute(
                    "INSERT INTO accounts (name, name_key, password_hash, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (name, key, password_hash, time.time()),
                )
                account_id = cur.lastrowid
                assert account_id is not None
                cur = self._db.execute(
                    "INSERT INTO characters (account_id, name, name_key, location)"
                    " VALUES (?, ?, ?, ?)",
                    (account_id, name, key, location),
                )
                character_id = cur.lastrowid
                assert character_id is not None
        except sqlite3.IntegrityError as exc:
            raise NameTaken(name) from exc
        return (
            AccountRecord(account_id, name, password_hash, False),
            CharacterRecord(character_id, account_id, name, location),
        )

    async def find_account(self, name: str) -> AccountRecord | None:
        """The account named ``name`` (any case), or None."""
        return await self._run(self._find_account, name)

    def _find_account(self, name: str) -> AccountRecord | None:
        row = self._db.execute(
            "SELECT id, name, password_hash, is_admin FROM accounts WHERE name_key = ?",
            (name_key(name),),
        ).fetchone()
        return None if row is None else AccountRecord(row[0], row[1], row[2], bool(row[3]))

    async def account(self, account_id: int) -> AccountRecord | None:
        """The account with this id, if it exists."""
        return await self._run(self._account, account_id)

    def _account(self, account_id: int) -> AccountRecord | None:
        row = self._db.execute(
            "SELECT id, name, password_hash, is_admin FROM accounts WHERE id = ?", (account_id,)
        ).fetchone()
        return None if row is None else AccountRecord(row[0], row[1], row[2], bool(row[3]))

    async def record_login(self, account_id: int, new_password_hash: str | None = None) -> None:
        """Note a successful login; store a re-hashed password if given."""
        await self._run(self._record_login, account_id, new_password_hash)

    def _record_login(self, account_id: int, new_password_hash: str | None) -> None:
        with self._db:
            self._db.execute(
                "UPDATE accounts SET last_login = ? WHERE id = ?", (time.time(), account_id)
            )
            if new_password_hash is not None:
                self._db.execute(
                    "UPDATE accounts SET password_hash = ? WHERE id = ?",
                    (new_password_hash, account_id),
                )

    async def set_admin(self, name: str, is_admin: bool = True) -> bool:
        """Grant or revoke admin rights; False if there is no such account."""
        return await self._run(self._set_admin, name, is_admin)

    def _set_admin(self, name: str, is_admin: bool) -> bool:
        with self._db:
            cur = self._db.execute(
                "UPDATE accounts SET is_admin = ? WHERE name_key = ?",
                (int(is_admin), name_key(name)),
            )
        return cur.rowcount == 1

    # -- characters ----------------------------------------------------------------

    async def character_of(self, account_id: int) -> CharacterRecord | None:
        """The character of account ``account_id``, or None."""
        return await self._run(self._character_of, account_id)

    def _character_of(self, account_id: int) -> CharacterRecord | None:
        row = self._db.execute(
            "SELECT id, account_id, name, location FROM characters"
            " WHERE account_id = ? ORDER BY id LIMIT 1",
            (account_id,),
        ).fetchone()
        return None if row is None else CharacterRecord(*row)

    async def character(self, character_id: int) -> CharacterRecord | None:
        """The character with this id, if it exists."""
        return await self._run(self._character, character_id)

    def _character(self, character_id: int) -> CharacterRecord | None:
        row = self._db.execute(
            "SELECT id, account_id, name, location FROM characters WHERE id = ?", (character_id,)
        ).fetchone()
        return None if row is None else CharacterRecord(*row)

    async def puppets(
        self, pairs: list[tuple[int, int]]
    ) -> dict[int, tuple[AccountRecord, CharacterRecord]]:
        """``character id -> (account, character)`` for ``(account, character)`` ids.

        One query for all of them (used to re-link every session after a reload).
        """
        return await self._run(self._puppets, pairs)

    def _puppets(
        self, pairs: list[tuple[int, int]]
    ) -> dict[int, tuple[AccountRecord, CharacterRecord]]:
        found: dict[int, tuple[AccountRecord, CharacterRecord]] = {}
        for start in range(0, len(pairs), 500):  # SQLite caps the number of parameters
            chunk = pairs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT a.id, a.name, a.password_hash, a.is_admin,"
                " c.id, c.account_id, c.name, c.location"
                " FROM characters c JOIN accounts a ON a.id = c.account_id"
                f" WHERE c.id IN ({marks})",
                [character for _, character in chunk],
            ).fetchall()
            wanted = dict((character, account) for account, character in chunk)
            for row in rows:
                if wanted.get(row[4]) == row[0]:
                    found[row[4]] = (
                        AccountRecord(row[0], row[1], row[2], bool(row[3])),
                        CharacterRecord(*row[4:]),
                    )
        return found

    async def save_locations(self, locations: Mapping[int, str]) -> None:
        """Store ``character id -> room key`` in one transaction."""
        if locations:
            await self._run(self._save_locations, dict(locations))

    def _save_locations(self, locations: dict[int, str]) -> None:
        with self._db:
            self._db.executemany(
                "UPDATE characters SET location = ? WHERE id = ?",
                [(room, char_id) for char_id, room in locations.items()],
            )

    # -- attributes ----------------------------------------------------------------------

    async def attributes(self, owner: str) -> dict[str, str]:
        """Every attribute of ``owner`` (``"account:12"``), as stored (JSON text)."""
        return await self._run(self._attributes, owner)

    def _attributes(self, owner: str) -> dict[str, str]:
        rows = self._db.execute("SELECT key, value FROM attributes WHERE owner = ?", (owner,))
        return dict(rows)

    async def write_attributes(self, changes: Mapping[tuple[str, str], str | None]) -> None:
        """Store ``(owner, key) -> JSON`` (None deletes), in one transaction."""
        await self._run(self._write_attributes, dict(changes))

    def _write_attributes(self, changes: dict[tuple[str, str], str | None]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO attributes (owner, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (owner, key) DO UPDATE SET value = excluded.value",
                [(o, k, v) for (o, k), v in changes.items() if v is not None],
            )
            self._db.executemany(
                "DELETE FROM attributes WHERE owner = ? AND key = ?",
                [(o, k) for (o, k), v in changes.items() if v is None],
            )

    # -- bans and throttles ------------------------------------------------------------

    async def bans(self) -> list[Ban]:
        """Every ban, oldest first."""
        return await self._run(self._bans)

    def _bans(self) -> list[Ban]:
        rows = self._db.execute(
            "SELECT id, kind, value, reason, banned_by, created_at FROM bans ORDER BY id"
        )
        return [Ban(*row) for row in rows]

    async def add_ban(self, kind: str, value: str, reason: str, by: str) -> Ban | None:
        """Ban ``value``; the new ban, or None if it was banned already."""
        return await self._run(self._add_ban, kind, value, reason, by)

    def _add_ban(self, kind: str, value: str, reason: str, by: str) -> Ban | None:
        now = time.time()
        with self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO bans (kind, value, reason, banned_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (kind, value, reason, by, now),
            )
        if not cursor.rowcount:
            return None
        return Ban(int(cursor.lastrowid or 0), kind, value, reason, by, now)

    async def remove_ban(self, kind: str, value: str) -> bool:
        """Lift a ban; False if there was none."""
        return await self._run(self._remove_ban, kind, value)

    def _remove_ban(self, kind: str, value: str) -> bool:
        with self._db:
            cursor = self._db.execute(
                "DELETE FROM bans WHERE kind = ? AND value = ?", (kind, value)
            )
        return cursor.rowcount > 0

    async def record_auth_event(self, keys: Sequence[tuple[str, str]], keep: float) -> None:
        """Note an event (a failed login, an account made) under each ``(kind, key)``;
        events older than ``keep`` seconds are dropped now and then."""
        await self._run(self._record_auth_event, keys, keep)

    def _record_auth_event(self, keys: Sequence[tuple[str, str]], keep: float) -> None:
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT INTO auth_events (kind, key, at) VALUES (?, ?, ?)",
                [(kind, key, now) for kind, key in keys],
            )
            self._db.execute("DELETE FROM auth_events WHERE at < ?", (now - keep,))

    async def count_auth_events(self, kind: str, key: str, within: float) -> tuple[int, float]:
        """Events under ``(kind, key)`` in the last ``within`` seconds, and the
        oldest one's time (0 when there are none)."""
        return await self._run(self._count_auth_events, kind, key, within)

    def _count_auth_events(self, kind: str, key: str, within: float) -> tuple[int, float]:
        count, oldest = self._db.execute(
            "SELECT COUNT(*), MIN(at) FROM auth_events WHERE kind = ? AND key = ? AND at >= ?",
            (kind, key, time.time() - within),
        ).fetchone()
        return int(count), float(oldest or 0.0)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        # Durability (docs/operations.md): WAL lets readers (a backup) run
        # beside the writer; synchronous FULL syncs the log at every commit,
        # so a commit survives a power cut, not just a crash.
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA busy_timeout = 5000")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            connection.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        elif version in (1, 2):
            upgrade = (_SCHEMA_2 if version == 1 else "") + _SCHEMA_3
            connection.executescript(f"BEGIN; {upgrade} PRAGMA user_version = 3; COMMIT;")
        elif version != SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {version}; this trio_mud knows {SCHEMA_VERSION}"
            )
        # From here on, "with connection:" makes each block one transaction.
        connection.isolation_level = "DEFERRED"
    except BaseException:
        connection.close()
        raise
    return connection


def check_database(path: Path) -> None:
    """Check an existing database at start: readable, a database, undamaged.

    Runs SQLite's ``PRAGMA quick_check`` and the schema version check (a
    missing file is fine: it will be created). Blocking: call it before the
    event loop runs, or in a worker thread.

    Raises:
        StoreError: what is wrong, in one line an operator can act on.
    """
    if not path.exists():
        return
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from None
    try:
        verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the database {path} is damaged or not a database ({exc})") from None
    finally:
        connection.close()
    if verdict != "ok":
        raise StoreError(f"the database {path} is damaged (quick_check: {verdict})")
    if version not in range(SCHEMA_VERSION + 1):
        raise StoreError(
            f"{path} has schema version {version}; this trio_mud knows {SCHEMA_VERSION}"
        )


def backup_database(path: Path, destination: Path) -> int:
    """Copy the database at ``path`` to ``destination``, consistently, while it
    is in use; the number of pages copied.

    SQLite's online backup API copies a snapshot in steps (writers wait only
    for a step, never for the whole copy); the copy is checked with
    ``PRAGMA integrity_check`` and only then renamed into place, so a
    ``destination`` that exists is replaced whole or not at all. A
    ``destination`` that is a directory gets a file named for the time.

    Raises:
        StoreError: there is no database at ``path``, or the copy is damaged.
        OSError, sqlite3.Error: the copy could not be written.
    """
    if not path.is_file():
        raise StoreError(f"there is no database at {path}")
    if destination.is_dir():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        destination = destination / f"trio_mud-{stamp}.sqlite3"
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(path)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target, pages=256, sleep=0.005)
            pages = target.execute("PRAGMA page_count").fetchone()[0]
            verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            target.close()
    finally:
        source.close()
    if verdict != "ok":
        partial.unlink(missing_ok=True)
        raise StoreError(f"the copy failed its integrity check: {verdict}")
    partial.replace(destination)
    return int(pages)
