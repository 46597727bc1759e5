"""SQL metadata store (SQLAlchemy 2 Core): SQLite by default, PostgreSQL through psycopg 3."""
