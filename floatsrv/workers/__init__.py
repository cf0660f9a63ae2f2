"""Background work, started and stopped only through aiohttp's cleanup_ctx."""
