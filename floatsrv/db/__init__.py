"""Storage: the SQLite store (connections, transactions, migrations) and per-table SQL functions.

Modules here never commit on their own and know nothing about HTTP; `store.Store` owns transactions.
"""
