"""Domain: the rules of seats and consumption, each use case one transaction. Never imports aiohttp."""
