"""Runnable examples shown in the documentation and run by ``tests/test_docs.py``.

Pages include these files (or single classes and functions of them) with
``literalinclude``, so every example in the documentation is code that the
test suite runs against the real app.
"""
