"""Versioned migrations of the results database (Alembic revision scripts, run programmatically).

Every other ``.py`` file in this folder is one Alembic revision (``revision`` / ``down_revision``). There is no
``alembic.ini`` and no ``env.py``: :func:`bench.store.session.upgrade` builds the Alembic environment in code
and runs the pending revisions on open. To add a change: copy the newest file, bump ``revision``, set
``down_revision`` to the previous one, write ``upgrade()`` with ``alembic.op`` calls, and update
``bench/store/models.py`` to match (tests/test_store.py compares them).
"""
