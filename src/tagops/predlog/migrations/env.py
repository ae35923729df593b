"""Alembic's entry point: the migrations run on the connection that ``tagops.predlog.schema.upgrade`` gives.

There is no alembic.ini: the database is whatever the log uses. A folder of scripts, not a package:
Alembic loads these files itself.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
