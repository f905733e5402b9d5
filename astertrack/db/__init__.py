"""Storage: engines and sessions, every table, portable column types, the routing-config counter, migrations."""
