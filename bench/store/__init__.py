"""The results database: ORM models, migrations, the session scope and DataFrame queries.

``open_store(url)`` opens (creating or upgrading) a database; ``bench.store.queries`` reads it into pandas.
Importing this package imports SQLAlchemy but not pandas (queries import pandas themselves).
"""

from bench.store.session import ResultsStore, open_store, redact_url

__all__ = ["ResultsStore", "open_store", "redact_url"]
