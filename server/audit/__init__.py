"""The audit trail's own code: the hash chain over the events (chain.py) and the
`machine-secrets audit` commands that verify and export it (cli.py)."""
