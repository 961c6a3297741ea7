"""The files the service reads besides its code: Envoy's configuration template, the descriptor
set its transcoder reads, and the OpenAPI document.

In a checkout they are where the repository keeps them (envoy.yaml, generated/). An installed
wheel carries them as data files under <prefix>/share/machine-secrets/ (pyproject.toml,
[tool.setuptools.data-files]), since they live outside the Python packages.
"""

import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]  # this file is server/runtime/resources.py
INSTALLED = Path(sys.prefix) / "share" / "machine-secrets"


def resource(path_in_checkout: str) -> Path:
    """The file at this path of the checkout, or the installed copy of it."""
    in_checkout = CHECKOUT / path_in_checkout
    if in_checkout.exists():
        return in_checkout
    return INSTALLED / Path(path_in_checkout).name
