"""The developers' tools, run from a checkout and not shipped in the wheel: code generation
(`genproto`, `genopenapi`, `apitable`), the benchmark (`bench`), mutation testing (`mutations`),
and what the tests and the benchmark start services with (`launcher`, `throwaway_database`).
The operator's commands, which do ship, are in `server/tools/`."""
