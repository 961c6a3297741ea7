"""The operator's commands, shipped with the service in its wheel (`python -m server.tools.NAME`).
The developers' tools are in the checkout's `devtools/`, not here."""
