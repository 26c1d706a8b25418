"""An installed app whose trigger task only Celery's autodiscovery imports.

Installed by ``tests.autodiscover_settings`` alone, for the processes that
``tests/test_task_discovery.py`` starts: nothing else imports its ``tasks``.
"""
