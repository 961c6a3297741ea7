"""Small commands that ship with the service."""
