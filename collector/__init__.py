"""Where a beacon enters: the HTTP collector (validation, client IP, hand-off)."""
