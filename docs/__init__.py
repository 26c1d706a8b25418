"""The documentation; a package only so that the tests can import ``docs.examples``."""
