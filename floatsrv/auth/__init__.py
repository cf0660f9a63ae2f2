"""Authentication primitives: password hashing, bearer tokens, the user directory. No HTTP here."""
