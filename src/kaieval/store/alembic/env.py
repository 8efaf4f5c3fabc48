"""Alembic environment for the kaieval store.

The store runs migrations programmatically (``kaieval.store.migrate``) and hands
over an open connection that is already inside a transaction holding the
migration lock, so this file only configures the context and runs. Running the
``alembic`` command line against a URL is supported too, for operators.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from kaieval.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    """Use the caller's connection when given one, else the configured URL."""
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("kaieval store migrations run online only")
run()
