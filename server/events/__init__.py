"""The events this service stores, one class each (base.py says what an event class declares).

By aggregate: org.py, user.py (a user's life and its personal access tokens), secret.py (a
machine user's client secrets), token.py (access tokens), instance.py; legacy.py holds the shapes
that are no longer written. A new event type is a class in one of them, or in a new module here.

Every module of the package is imported with it, so that each class has registered its stored
type name (base.decode_payload finds it) wherever any event is used: a new module cannot be
forgotten in a list.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
