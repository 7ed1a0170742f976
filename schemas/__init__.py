"""The data contracts: the beacon v1 JSON Schema, the Python types used in code,
and the ClickHouse DDL as ordered migrations (``schemas/clickhouse/NNNN_*.sql``)."""
