"""Where the project's servers keep their data: SQLite files, or PostgreSQL.

``sweepflow up --database postgresql://USER:PASSWORD@HOST:PORT/NAME`` (or
``$SWEEPFLOW_DATABASE``; the flag wins, the default is SQLite in the state folder) puts
Prefect's server and the MLflow store in two databases of that PostgreSQL server,
``NAME_prefect`` and ``NAME_mlflow``: both manage their schema with Alembic (each its
own ``alembic_version`` table), so they cannot share one. Both are created when
missing (the user needs ``CREATEDB``, or someone creates them beforehand); ``NAME``
itself only serves to connect for that. Prefect's server reaches its database through
asyncpg (``postgresql+asyncpg://``), MLflow and sweepflow's direct SQL route through
psycopg2 (``postgresql://``).

Parsing is pure (standard library); the driver is imported only to connect.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from sweepflow.errors import SweepflowError

__all__ = [
    "DATABASE_ENV",
    "DatabaseURLError",
    "DatabaseUnreachableError",
    "Postgres",
    "chosen_database",
    "ensure_database",
    "masked_url",
]

DATABASE_ENV = "SWEEPFLOW_DATABASE"
_SCHEMES = ("postgresql", "postgres")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_NAME = 63 - len("_prefect")  # PostgreSQL cuts identifiers at 63 bytes
_EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/NAME"


class DatabaseURLError(SweepflowError, ValueError):
    """A ``--database`` / ``$SWEEPFLOW_DATABASE`` value that is not a usable URL."""


class DatabaseUnreachableError(SweepflowError, ConnectionError):
    """The PostgreSQL server cannot be reached, refuses the user, or its databases
    cannot be created."""


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL server and the base name of sweepflow's two databases on it.

    ``netloc`` is kept as written (user, password still percent-encoded), so URLs built
    from it reach the same server with the same credentials.

    >>> db = Postgres.parse("postgres://me:s3cret@db.example:6543/sweeps")
    >>> db.prefect_url
    'postgresql+asyncpg://me:s3cret@db.example:6543/sweeps_prefect'
    >>> db.mlflow_url
    'postgresql://me:s3cret@db.example:6543/sweeps_mlflow'
    >>> db.display
    'postgresql://me:***@db.example:6543/sweeps'
    >>> Postgres.parse("postgresql://me@localhost").url
    'postgresql://me@localhost:5432/sweepflow'
    """

    netloc: str
    host: str
    port: int
    user: str
    name: str
    query: str = ""

    @classmethod
    def parse(cls, url: str, source: str = "--database", *, base: bool = True) -> Postgres:
        """Parse a PostgreSQL URL; ``source`` names where it came from in errors.

        The scheme is ``postgresql`` or ``postgres`` (a ``+driver`` is ignored: each
        server gets the driver it needs), the port defaults to 5432 and the name to
        ``sweepflow``. With ``base`` the name must be one that ``_prefect`` and
        ``_mlflow`` can follow (letters, digits, ``_``); otherwise (an MLflow store's
        own URL) any name without quotes or slashes.

        Raises:
            DatabaseURLError: Not such a URL; the message shows the value and an example.
        """
        shown = masked_url(url)
        try:
            parts = urlsplit(url.strip())
            port = parts.port or 5432
        except ValueError as error:
            raise DatabaseURLError(
                f"{source}: {shown!r} is not a URL ({error}); give {_EXAMPLE}"
            ) from None
        scheme = parts.scheme.partition("+")[0].lower()
        if scheme not in _SCHEMES or "://" not in url:
            raise DatabaseURLError(
                f"{source}: {shown!r} is not a PostgreSQL URL; give {_EXAMPLE} "
                "(or 'sqlite' for the default SQLite files)"
            )
        if not parts.hostname:
            raise DatabaseURLError(
                f"{source}: {shown!r} names no host; give {_EXAMPLE} "
                "(127.0.0.1 for a server on this machine)"
            )
        name = parts.path.lstrip("/") or "sweepflow"
        if base and (not _NAME.fullmatch(name) or len(name) > _MAX_NAME):
            raise DatabaseURLError(
                f"{source}: database name {name!r} in {shown!r} must be letters, digits and "
                f"'_' (not first), at most {_MAX_NAME} characters; e.g. {_EXAMPLE}"
            )
        if {'"', "/"} & set(name) or len(name) > 63:
            raise DatabaseURLError(f"{source}: {name!r} in {shown!r} is not a database name")
        if parts.fragment:
            raise DatabaseURLError(f"{source}: {shown!r} has a '#' part; remove it")
        netloc = parts.netloc if parts.port else f"{parts.netloc}:{port}"
        return cls(netloc, parts.hostname, port, parts.username or "", name, parts.query)

    def _url(self, scheme: str, name: str) -> str:
        return SplitResult(scheme, self.netloc, f"/{name}", self.query, "").geturl()

    def url_of(self, name: str) -> str:
        """The URL (psycopg2's) of the database ``name`` on this server."""
        return self._url("postgresql", name)

    @property
    def url(self) -> str:
        """The URL, normalised (``postgresql://``, with the port and the name)."""
        return self._url("postgresql", self.name)

    @property
    def display(self) -> str:
        """The URL with its password hidden, for output and logs."""
        return masked_url(self.url)

    @property
    def where(self) -> str:
        """``HOST:PORT``, for messages."""
        return f"{self.host}:{self.port}"

    @property
    def prefect_database(self) -> str:
        return f"{self.name}_prefect"

    @property
    def mlflow_database(self) -> str:
        return f"{self.name}_mlflow"

    @property
    def prefect_url(self) -> str:
        """Prefect's ``PREFECT_API_DATABASE_CONNECTION_URL`` (its async driver)."""
        return self._url("postgresql+asyncpg", self.prefect_database)

    @property
    def mlflow_url(self) -> str:
        """The MLflow tracking URI (SQLAlchemy's default sync driver, psycopg2)."""
        return self._url("postgresql", self.mlflow_database)


def chosen_database(given: str | None) -> tuple[Postgres | None, str]:
    """The database asked for: ``given`` (the flag) > ``$SWEEPFLOW_DATABASE`` > none.

    Returns:
        The server (None for SQLite: nothing asked, or the word ``sqlite``) and where
        the choice came from (``--database``, ``$SWEEPFLOW_DATABASE`` or ``default``).

    >>> chosen_database("sqlite")
    (None, '--database')
    """
    if given:
        source, text = "--database", given
    elif os.environ.get(DATABASE_ENV):
        source, text = f"${DATABASE_ENV}", os.environ[DATABASE_ENV]
    else:
        return None, "default"
    if text.strip().lower() == "sqlite":
        return None, source
    return Postgres.parse(text, source), source


def ensure_database(db: Postgres, name: str, source: str = "--database") -> None:
    """Connect to the database ``name`` of ``db``'s server, creating it if missing.

    Raises:
        DatabaseUnreachableError: The server does not answer, refuses the user, or the
            database is missing and cannot be created; the message says how to fix it.
    """
    import psycopg2

    try:
        psycopg2.connect(db.url_of(name), connect_timeout=5).close()
        return
    except psycopg2.OperationalError as error:
        if f'database "{name}" does not exist' not in str(error):
            raise _unreachable(db, source, error) from None
    # Created from the named database (or the server's maintenance one).
    last: Exception | None = None
    for maintenance in dict.fromkeys((db.name, "postgres", "template1")):
        try:
            connection = psycopg2.connect(db.url_of(maintenance), connect_timeout=5)
        except psycopg2.OperationalError as error:
            last = error
            continue
        try:
            connection.autocommit = True  # CREATE DATABASE runs outside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
            return
        except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
            return  # made by a concurrent `up` or run meanwhile
        except psycopg2.errors.InsufficientPrivilege:
            raise DatabaseUnreachableError(
                f"user '{db.user}' may not create database '{name}' on PostgreSQL at "
                f"{db.where} (from {source}); create it (createdb -h {db.host} -p {db.port} "
                f"-O {db.user or 'USER'} {name}) or grant the user CREATEDB"
            ) from None
        finally:
            connection.close()
    raise _unreachable(db, source, last) from None


def _unreachable(db: Postgres, source: str, error: Exception | None) -> DatabaseUnreachableError:
    """One line from a driver error: what failed, where, and how to fix it."""
    text = " ".join(str(error or "").split())
    lowered = text.lower()
    where = f"PostgreSQL at {db.where} (from {source}: {db.display})"
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return DatabaseUnreachableError(
            f"{where} refused user '{db.user}': wrong or missing password; fix the user and "
            "password in the URL"
        )
    if "does not exist" in lowered and "role" in lowered:
        return DatabaseUnreachableError(
            f"{where} has no user '{db.user}'; create it (createuser --createdb "
            f"{db.user or 'USER'}) or fix the user in the URL"
        )
    if "pg_hba.conf" in lowered:
        return DatabaseUnreachableError(
            f"{where} does not let user '{db.user}' connect from this host (pg_hba.conf); "
            "ask its administrator to allow it"
        )
    if "does not exist" in lowered:
        return DatabaseUnreachableError(
            f"{where}: no database to connect to ({text}); create database '{db.name}' or "
            "name one that exists"
        )
    reason = "connection refused" if "refused" in lowered else text or "no answer"
    if "timeout" in lowered:
        reason = "no answer within 5 s"
    elif "translate host name" in lowered or "name or service not known" in lowered:
        reason = f"unknown host '{db.host}'"
    return DatabaseUnreachableError(
        f"cannot connect to {where}: {reason}; start the server (scripts/postgres-up starts "
        "one on this machine) or fix the host and port in the URL"
    )


def masked_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***`` (for output).

    >>> masked_url("postgresql://me:pw@h:1/db")
    'postgresql://me:***@h:1/db'
    >>> masked_url("sqlite:////tmp/x.db")
    'sqlite:////tmp/x.db'
    """
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url.strip())
