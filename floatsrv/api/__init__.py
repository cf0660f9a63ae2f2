"""HTTP layer: parse requests, call the domain, shape responses. No SQL and no rules live here."""
