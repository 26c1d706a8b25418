"""The example project's settings, with an app whose tasks no module imports."""

from example_project.settings import *  # noqa: F403
from example_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.autodiscovered"]
