"""The HTTP API under /api/ (token-protected): the privacy officer's data-subject
requests now, the query API later. Plain ASGI like the collector."""
