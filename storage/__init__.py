"""Where events are stored: ClickHouse through clickhouse-connect, embedded (chDB) or a server."""
