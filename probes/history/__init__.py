"""The history of checks: every finished run in a SQLite database, and what changed between two.

store.py    the database (location, schema and migrations, runs, audits, pruning)
snapshot.py the part of a report that is kept (no transcript, no message content)
diff.py     what changed between two runs of a domain
"""
