"""The history database: every finished check, and the audits that group them.

Location: ``$MXLENS_STATE_DIR/history.sqlite3``; without it ``$XDG_STATE_HOME/mxlens/``, else
``~/.local/state/mxlens/`` (contract.md). ``default_path()`` gives it.

Safety. The database is in WAL mode; each finished run is one ``BEGIN IMMEDIATE`` transaction
(the run, its audit item if any, and pruning), so a ``kill -9`` loses at most the run in
progress. Several mxlens processes may write at once: every connection has a busy timeout and
every write transaction is retried with a jittered back-off while SQLite says "locked"/"busy",
so a writer waits instead of failing. A file that is not a SQLite database, or a malformed one,
is renamed to ``history.sqlite3.corrupt-<UTC stamp>`` (never deleted) and a new database is
started; ``HistoryStore.notices`` carries the line a front end should print about it. A
database or directory that cannot be opened or written raises ``HistoryError`` (a
``CheckError``: one line, exit 3 for the history commands; ``check`` prints it and says the run
was not recorded).

Schema. ``PRAGMA user_version`` is the schema version; ``MIGRATIONS[i]`` moves a database from
version i to i+1, inside the same transaction that bumps the version, so a new mxlens upgrades
an old file in place and two processes cannot both migrate. A file newer than this mxlens
knows raises ``HistoryError`` rather than being touched.

Size. After every insert the oldest runs beyond ``max_runs`` are deleted (setting:
``$MXLENS_HISTORY_MAX_RUNS``, default ``DEFAULT_MAX_RUNS``). An audit item keeps its own row
when its run is pruned (``run_id`` becomes NULL), so a resumed audit never redoes it.

API (everything a front end or ``mxlens audit`` needs)::

    with HistoryStore() as store:             # or HistoryStore(path, max_runs=N)
        store.notices                         # lines to show (a corrupt file moved aside)
        run_id = store.record_run(doc, started=t0, finished=t1, source="check",
                                  options=options_json(opts))   # doc: check --json document
        store.runs(domain=None, limit=20)     # [RunSummary], newest first
        store.run(run_id)                     # Run (summary + .report + .options); UnknownRun
        store.latest(domain, n=2)             # [Run], newest first
        store.previous(run)                   # the run of the same domain before it, or None

        audit_id = store.create_audit(items, options)   # items: list of dicts (the input rows)
        store.record_audit_item(audit_id, seq, domain, row, doc=doc, started=t0,
                                finished=t1, options=...)  # the run + the item, one
                                                           # transaction; a second call for the
                                                           # same (audit, seq) records nothing
                                                           # and returns the first run id
        store.audit(audit_id)                 # Audit (input, options, items); UnknownAudit
        store.finish_audit(audit_id)

Tables (schema 1): ``runs`` (id, domain = the target's lower-case ASCII form, target as typed,
started/finished as ISO 8601 UTC "2026-11-28T14:02:05Z", exit, worst, policy, source =
check|ui|watch|explain|audit, mxlens_version, options JSON, report JSON = ``snapshot(doc)``), ``audits``
(id, created, finished, input JSON, options JSON), ``audit_items`` (audit_id, seq, domain,
run_id, exit, row JSON, recorded).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from probes.model.errors import CheckError
from probes.model.names import canonical
from probes.model.options import Options

from .snapshot import snapshot

DB_NAME = "history.sqlite3"
DEFAULT_MAX_RUNS = 2_000
BUSY_TIMEOUT_S = 10.0
# Total time a write keeps retrying while other processes hold the lock.
WRITE_PATIENCE_S = 60.0

T = TypeVar("T")


class HistoryError(CheckError):
    """The history database cannot be used: unreadable, unwritable, or from a newer mxlens."""


class UnknownRun(CheckError):
    """No run with that id (or none for that domain)."""


class UnknownAudit(CheckError):
    """No audit with that id."""


# --------------------------------------------------------------------------- location


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """$MXLENS_STATE_DIR, else $XDG_STATE_HOME/mxlens, else ~/.local/state/mxlens."""
    env = os.environ if env is None else env
    if env.get("MXLENS_STATE_DIR"):
        return Path(env["MXLENS_STATE_DIR"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "mxlens"
    return Path.home() / ".local" / "state" / "mxlens"


def default_path(env: Mapping[str, str] | None = None) -> Path:
    return state_dir(env) / DB_NAME


def max_runs_setting(env: Mapping[str, str] | None = None) -> int:
    """$MXLENS_HISTORY_MAX_RUNS (a whole number >= 1), else DEFAULT_MAX_RUNS."""
    env = os.environ if env is None else env
    text = env.get("MXLENS_HISTORY_MAX_RUNS", "").strip()
    if not text:
        return DEFAULT_MAX_RUNS
    if not text.isdigit() or int(text) < 1:
        raise HistoryError(f"MXLENS_HISTORY_MAX_RUNS must be a whole number >= 1, not {text!r}")
    return int(text)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RunSummary:
    id: int
    domain: str
    target: str
    started: str
    finished: str
    exit: int
    worst: str | None
    policy: str
    source: str
    mxlens_version: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Run(RunSummary):
    options: dict[str, Any]
    report: dict[str, Any]

    def summary(self) -> RunSummary:
        return RunSummary(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RunSummary)})


@dataclass(frozen=True)
class AuditItem:
    seq: int
    domain: str
    run_id: int | None
    exit: int | None
    row: dict[str, Any] | None
    recorded: str


@dataclass(frozen=True)
class Audit:
    id: str
    created: str
    finished: str | None
    input: list[dict[str, Any]]
    options: dict[str, Any]
    items: list[AuditItem]

    def done_seqs(self) -> set[int]:
        return {item.seq for item in self.items}


# --------------------------------------------------------------------------- schema

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            domain TEXT NOT NULL,
            target TEXT NOT NULL,
            started TEXT NOT NULL,
            finished TEXT NOT NULL,
            exit INTEGER NOT NULL,
            worst TEXT,
            policy TEXT NOT NULL,
            source TEXT NOT NULL,
            mxlens_version TEXT NOT NULL,
            options TEXT NOT NULL,
            report TEXT NOT NULL
        )""",
        "CREATE INDEX runs_domain ON runs (domain, id)",
        """CREATE TABLE audits (
            id TEXT PRIMARY KEY,
            created TEXT NOT NULL,
            finished TEXT,
            input TEXT NOT NULL,
            options TEXT NOT NULL
        )""",
        """CREATE TABLE audit_items (
            audit_id TEXT NOT NULL REFERENCES audits (id),
            seq INTEGER NOT NULL,
            domain TEXT NOT NULL,
            run_id INTEGER,
            exit INTEGER,
            row TEXT,
            recorded TEXT NOT NULL,
            PRIMARY KEY (audit_id, seq)
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def utc_stamp(when: datetime | None = None) -> str:
    """ISO 8601 UTC to the second: 2026-11-28T14:02:05Z."""
    when = datetime.now(timezone.utc) if when is None else when.astimezone(timezone.utc)
    return when.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def mxlens_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mxlens")
    except PackageNotFoundError:
        return "unknown"


def options_json(options: Options) -> dict[str, Any]:
    """The options of a run as JSON data (what `diff` shows when two runs were made differently)."""
    data = dataclasses.asdict(options)
    data.pop("given", None)
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


def domain_key(doc: Mapping[str, Any]) -> str:
    """The domain a run is filed under: the target's ASCII form, lower case, no final dot."""
    name = doc.get("target_ascii") or doc.get("target") or ""
    return canonical(str(name))


def _locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _corrupt(exc: sqlite3.Error) -> bool:
    """A file that is not a database or is damaged (as opposed to one we may not open)."""
    text = str(exc).lower()
    return not isinstance(exc, sqlite3.OperationalError) or "malformed" in text


# --------------------------------------------------------------------------- the store


class HistoryStore:
    """One connection to the history database. Not shared between threads."""

    def __init__(self, path: Path | str | None = None, *, max_runs: int | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.max_runs = max_runs if max_runs is not None else max_runs_setting()
        self.notices: list[str] = []
        self._conn: sqlite3.Connection | None = None
        self._open()

    # ---- opening -------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise HistoryError(
                f"cannot create the state directory {self.path.parent}: {exc.strerror or exc}"
            ) from None
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise HistoryError(f"cannot read and write the history database {self.path}")
        for attempt in range(2):
            try:
                self._conn = self._connect()
                return
            except sqlite3.Error as exc:
                self.close()
                if _corrupt(exc) and attempt == 0:
                    self._move_aside(str(exc))
                    continue
                raise HistoryError(f"cannot use the history database {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn = conn
            # Before anything writes (even the WAL switch changes the header): a file from a
            # newer mxlens is left exactly as it is.
            self._refuse_newer(conn)
            mode = self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
            # In WAL mode NORMAL loses nothing committed when the process dies (kill -9);
            # only a power cut can lose the last transactions, and never corrupts.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
            # Reading the schema is enough to find a file that is not a database; damage
            # deeper in the file shows on first use, and _failed() moves the file aside then.
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _refuse_newer(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"the history database {self.path} has schema {version}, newer than this "
                f"mxlens knows ({SCHEMA_VERSION}); upgrade mxlens or set MXLENS_STATE_DIR"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        self._refuse_newer(conn)

        def step() -> None:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            self._refuse_newer(conn)  # another process may have migrated meanwhile
            for index in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[index]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(step)

    def _move_aside(self, reason: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, target)
        except FileNotFoundError:
            return  # another process moved it first
        except OSError as exc:
            raise HistoryError(
                f"the history database {self.path} is corrupt ({reason}) and cannot be moved "
                f"aside: {exc.strerror or exc}"
            ) from None
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            with contextlib.suppress(OSError):
                if side.exists():
                    os.replace(side, Path(str(target) + suffix))
        self.notices.append(
            f"the history database {self.path} was corrupt ({reason}); "
            f"moved aside to {target}, a new one started"
        )

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions --------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise HistoryError(f"the history database {self.path} is closed")
        return self._conn

    def _retry(self, action: Callable[[], T]) -> T:
        deadline = time.monotonic() + WRITE_PATIENCE_S
        delay = 0.01
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _locked(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    def _write(self, body: Callable[[], T]) -> T:
        """Run body() in one BEGIN IMMEDIATE transaction, retried while the database is busy."""
        conn = self.conn

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body()
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry(attempt)

    def _failed(self, exc: sqlite3.Error, verb: str) -> HistoryError:
        """The one-line error for a failed read or write; a damaged file is moved aside."""
        if _corrupt(exc):
            self.close()
            self._move_aside(str(exc))
            if self.notices:
                return HistoryError(self.notices[-1])
        return HistoryError(f"cannot {verb} the history database {self.path}: {exc}")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self.conn
        except sqlite3.Error as exc:
            raise self._failed(exc, "read") from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._failed(exc, "write") from None

    # ---- runs ----------------------------------------------------------------------------
    def _insert_run(
        self,
        doc: Mapping[str, Any],
        *,
        started: datetime,
        finished: datetime | None,
        source: str,
        options: Mapping[str, Any] | None,
    ) -> int:
        kept = snapshot(dict(doc))
        severities = {f.get("severity") for f in kept.get("findings") or []}
        worst = next((s for s in ("error", "warning", "info") if s in severities), None)
        cur = self.conn.execute(
            "INSERT INTO runs (domain, target, started, finished, exit, worst, policy, source,"
            " mxlens_version, options, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                domain_key(kept),
                str(kept.get("target") or ""),
                utc_stamp(started),
                utc_stamp(finished),
                int(kept.get("exit_code", 3)),
                worst,
                str(kept.get("policy") or ""),
                source,
                mxlens_version(),
                json.dumps(dict(options or {}), ensure_ascii=False, sort_keys=True),
                json.dumps(kept, ensure_ascii=False),
            ),
        )
        run_id = cur.lastrowid
        assert run_id is not None
        self._prune()
        return int(run_id)

    def _prune(self) -> None:
        count = self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        excess = count - self.max_runs
        if excess <= 0:
            return
        old = "SELECT id FROM runs ORDER BY id LIMIT ?"
        self.conn.execute(
            f"UPDATE audit_items SET run_id = NULL WHERE run_id IN ({old})", (excess,)
        )
        self.conn.execute(f"DELETE FROM runs WHERE id IN ({old})", (excess,))

    def record_run(
        self,
        doc: Mapping[str, Any],
        *,
        started: datetime,
        finished: datetime | None = None,
        source: str = "check",
        options: Mapping[str, Any] | None = None,
    ) -> int:
        """Store one finished run (a `check --json` document); returns its id."""
        with self._writing():
            return self._write(
                lambda: self._insert_run(
                    doc, started=started, finished=finished, source=source, options=options
                )
            )

    _COLUMNS = "id, domain, target, started, finished, exit, worst, policy, source, mxlens_version"

    @staticmethod
    def _summary(row: tuple[Any, ...]) -> RunSummary:
        return RunSummary(*row[:10])

    @staticmethod
    def _full(row: tuple[Any, ...]) -> Run:
        names = [f.name for f in dataclasses.fields(RunSummary)]
        fields: dict[str, Any] = dict(zip(names, row[:10], strict=True))
        return Run(**fields, options=json.loads(row[10]), report=json.loads(row[11]))

    def runs(self, domain: str | None = None, limit: int = 20) -> list[RunSummary]:
        """The newest runs first, of one domain (its ASCII form) or of all."""
        with self._reading() as conn:
            if domain is None:
                rows = conn.execute(
                    f"SELECT {self._COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {self._COLUMNS} FROM runs WHERE domain = ? ORDER BY id DESC LIMIT ?",
                    (domain.rstrip(".").lower(), limit),
                ).fetchall()
        return [self._summary(r) for r in rows]

    def run(self, run_id: int) -> Run:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {self._COLUMNS}, options, report FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise UnknownRun(
                f"no run {run_id} in the history ({self.path}); `mxlens history` lists them"
            )
        return self._full(row)

    def latest(self, domain: str, n: int = 2) -> list[Run]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {self._COLUMNS}, options, report FROM runs WHERE domain = ?"
                " ORDER BY id DESC LIMIT ?",
                (domain.rstrip(".").lower(), n),
            ).fetchall()
        return [self._full(r) for r in rows]

    def previous(self, run: RunSummary) -> Run | None:
        """The run of the same domain recorded just before `run`."""
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {self._COLUMNS}, options, report FROM runs WHERE domain = ? AND id < ?"
                " ORDER BY id DESC LIMIT 1",
                (run.domain, run.id),
            ).fetchone()
        return self._full(row) if row is not None else None

    def count(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    # ---- audits --------------------------------------------------------------------------
    def create_audit(
        self, items: list[dict[str, Any]], options: Mapping[str, Any] | None = None
    ) -> str:
        """A new audit over `items` (the input rows, in order); returns its id."""
        created = utc_stamp()
        audit_id = (
            datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + f"-{random.randrange(16**4):04x}"
        )

        def body() -> str:
            self.conn.execute(
                "INSERT INTO audits (id, created, input, options) VALUES (?, ?, ?, ?)",
                (
                    audit_id,
                    created,
                    json.dumps(items, ensure_ascii=False),
                    json.dumps(dict(options or {}), ensure_ascii=False, sort_keys=True),
                ),
            )
            return audit_id

        with self._writing():
            return self._write(body)

    def audit(self, audit_id: str) -> Audit:
        with self._reading() as conn:
            head = conn.execute(
                "SELECT id, created, finished, input, options FROM audits WHERE id = ?",
                (audit_id,),
            ).fetchone()
            if head is None:
                raise UnknownAudit(f"no audit {audit_id!r} in the history ({self.path})")
            rows = conn.execute(
                "SELECT seq, domain, run_id, exit, row, recorded FROM audit_items"
                " WHERE audit_id = ? ORDER BY seq",
                (audit_id,),
            ).fetchall()
        items = [
            AuditItem(r[0], r[1], r[2], r[3], json.loads(r[4]) if r[4] else None, r[5])
            for r in rows
        ]
        return Audit(head[0], head[1], head[2], json.loads(head[3]), json.loads(head[4]), items)

    def record_audit_item(
        self,
        audit_id: str,
        seq: int,
        domain: str,
        row: Mapping[str, Any] | None,
        *,
        doc: Mapping[str, Any] | None = None,
        started: datetime | None = None,
        finished: datetime | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> int | None:
        """Record item `seq` of an audit, with its run when `doc` is given, in one transaction.
        Returns the run id. Recording the same item twice stores nothing new."""

        def body() -> int | None:
            known = self.conn.execute("SELECT 1 FROM audits WHERE id = ?", (audit_id,)).fetchone()
            if known is None:
                raise UnknownAudit(f"no audit {audit_id!r} in the history ({self.path})")
            done = self.conn.execute(
                "SELECT run_id FROM audit_items WHERE audit_id = ? AND seq = ?", (audit_id, seq)
            ).fetchone()
            if done is not None:
                return done[0]  # type: ignore[no-any-return]
            run_id = None
            exit_code = None
            if doc is not None:
                run_id = self._insert_run(
                    doc,
                    started=started or datetime.now(timezone.utc),
                    finished=finished,
                    source="audit",
                    options=options,
                )
                exit_code = int(doc.get("exit_code", 3))
            if row is not None and isinstance(row.get("exit"), int):
                exit_code = int(row["exit"])
            self.conn.execute(
                "INSERT INTO audit_items (audit_id, seq, domain, run_id, exit, row, recorded)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    audit_id,
                    seq,
                    domain,
                    run_id,
                    exit_code,
                    json.dumps(dict(row), ensure_ascii=False) if row is not None else None,
                    utc_stamp(),
                ),
            )
            return run_id

        with self._writing():
            return self._write(body)

    def finish_audit(self, audit_id: str) -> None:
        def body() -> None:
            cur = self.conn.execute(
                "UPDATE audits SET finished = ? WHERE id = ?", (utc_stamp(), audit_id)
            )
            if cur.rowcount == 0:
                raise UnknownAudit(f"no audit {audit_id!r} in the history ({self.path})")

        with self._writing():
            self._write(body)
