"""Sphinx configuration of the django-triggers documentation.

Build it with::

    pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The API reference imports the app's modules, models included: Django must be
# set up first, with the example project's settings (no database is touched).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

import django  # noqa: E402

django.setup()

import django_triggers  # noqa: E402

project = "django-triggers"
author = "the django-triggers authors"
copyright = "the django-triggers authors"
version = release = django_triggers.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]

exclude_patterns = ["_build", "examples"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autodoc_typehints = "description"
autodoc_typehints_format = "short"

try:
    import furo  # noqa: F401
except ImportError:
    html_theme = "alabaster"
else:
    html_theme = "furo"
html_title = f"django-triggers {release}"
html_static_path: list[str] = []
