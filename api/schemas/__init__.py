"""Response bodies of the HTTP API as msgspec Structs, one module per area: each handler declares the one it
returns, so /schema/openapi.json names and types every JSON answer, and msgspec renders the instants (UTC, "Z")."""
