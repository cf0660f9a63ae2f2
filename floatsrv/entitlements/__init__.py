"""Entitlements the vendor signs: the license file format (`fileformat`), its payload (`payload`), the keys
this build trusts (`trust`) and the checks that open a file (`verify`). Pure code: no database, no HTTP."""
