"""Opening the results database: engine, schema migrations, and the one session scope.

``open_store(url)`` accepts a SQLAlchemy URL (``sqlite:///.bench/results.db``, ``postgresql://user@host/db``)
or an existing :class:`ResultsStore`, creates the SQLite folder if needed, runs pending migrations and returns
a :class:`ResultsStore`. Every unit of work goes through ``store.session()``: one commit-or-rollback scope.

Migrations: Alembic revision scripts in ``bench/store/migrations`` run through Alembic's programmatic API (no
``alembic.ini``, no ``env.py``), with the version table ``bench_schema_version`` so that a PostgreSQL database
shared with Optuna (which keeps its own ``alembic_version``) is not confused. Alembic rather than a home-made
runner: it gives batch mode for SQLite ``ALTER``s, schema comparison for the test, and the usual workflow for
whoever changes the schema next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from bench.errors import StoreError
from bench.redact import redact_url

__all__ = ["ResultsStore", "open_store", "redact_url", "normalize_url", "upgrade", "MIGRATIONS_DIR",
           "VERSION_TABLE"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "bench_schema_version"
_PG_LOCK_ID = 0x62656E6368  # "bench": advisory lock held while migrating a PostgreSQL database

_cache_lock = threading.Lock()
_engines: dict[tuple[str, int], Engine] = {}


def normalize_url(url: str) -> str:
    """Use the installed psycopg 3 driver for plain ``postgresql://`` URLs; leave other URLs alone."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _script_directory() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR), version_locations=[str(MIGRATIONS_DIR)])


def head_revision() -> str:
    """The newest schema revision this code knows."""
    return str(_script_directory().get_current_head())


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def upgrade(engine: Engine) -> None:
    """Run every pending migration (idempotent; safe when several processes open the store at once)."""
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext

    script = _script_directory()
    head = script.get_current_head()
    if current_revision(engine) == head:
        return
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    def _upgrade(rev: Any, context: Any) -> Any:
        return script._upgrade_revs("head", rev)

    with _migration_lock(engine), engine.begin() as conn:
        env = EnvironmentContext(config, script, fn=_upgrade)
        env.configure(connection=conn, version_table=VERSION_TABLE, render_as_batch=True,
                      transactional_ddl=True)
        with env.begin_transaction():
            env.run_migrations()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations between processes: a file lock for SQLite, an advisory lock for PostgreSQL."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        lock_path = Path(str(url.database) + ".lock")
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_ID})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_ID})
                conn.commit()
    else:
        yield


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _make_engine(url: str) -> Engine:
    u = make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if u.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class ResultsStore:
    """An opened, migrated results database.

    ``store.session()`` is the commit-or-rollback scope every write goes through; ``store.engine`` is the
    SQLAlchemy engine (pandas reads use it); ``store.url`` is safe to print (password hidden).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False, future=True)

    @property
    def url(self) -> str:
        return redact_url(self.engine.url.render_as_string(hide_password=False))

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any exception, always closes."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def __repr__(self) -> str:
        return f"ResultsStore({self.url!r})"


def open_store(url: str | os.PathLike[str] | ResultsStore | Engine, *, migrate: bool = True) -> ResultsStore:
    """Open (and create or upgrade) the results database at ``url``.

    ``url`` may be a SQLAlchemy URL, a path to a SQLite file, an :class:`Engine` or a store (returned as is).
    Engines are cached per process, so opening the same URL twice is cheap. Raises :class:`StoreError` when the
    database cannot be reached or was written by a newer version of bench.
    """
    if isinstance(url, ResultsStore):
        return url
    if isinstance(url, Engine):
        engine = url
    else:
        s = os.fspath(url) if isinstance(url, os.PathLike) else str(url)
        if "://" not in s:
            s = f"sqlite:///{s}"
        s = normalize_url(s)
        key = (s, os.getpid())
        with _cache_lock:
            cached = _engines.get(key)
            if cached is None:
                try:
                    cached = _engines[key] = _make_engine(s)
                except (ArgumentError, ValueError) as exc:
                    raise StoreError(
                        f"results database URL {redact_url(s)!r} is not a valid SQLAlchemy URL ({exc}; accepted: "
                        "sqlite:///path/results.db, postgresql://user@host:5432/db)") from exc
            engine = cached
    if migrate:
        try:
            rev = current_revision(engine)
            known = {sc.revision for sc in _script_directory().walk_revisions()}
            if rev is not None and rev not in known:
                raise StoreError(f"results database {redact_url(engine.url.render_as_string(False))} has schema "
                                 f"revision {rev!r}, newer than this bench knows ({sorted(known)}); upgrade bench")
            upgrade(engine)
        except DBAPIError as exc:
            raise StoreError(f"cannot open the results database {redact_url(engine.url.render_as_string(False))}: "
                             f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}") from exc
    return ResultsStore(engine)


def dispose_engines() -> None:
    """Close every cached engine of this process (tests dropping a database call it first)."""
    with _cache_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
