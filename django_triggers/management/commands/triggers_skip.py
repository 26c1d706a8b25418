from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_triggers.management.base import (
    check_name_argument,
    get_manager,
    manager_errors,
    parse_json_object,
    wait_for_task_threads,
    write_json,
)
from django_triggers.text import printable


class Command(BaseCommand):
    help = (
        "Skip a failed task instance of a session, so the workflow can go on without it. "
        "With --cascade, the task's name is fired as if it had finished, with --result as "
        "the kwargs; without it, nothing waiting on the task runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The uid of the session.")
        parser.add_argument("instance", help="The name of the failed instance, like 't_import#0'.")
        parser.add_argument(
            "--cascade",
            action="store_true",
            help="Fire the task's name, so the tasks waiting on it can run.",
        )
        parser.add_argument(
            "--result",
            metavar="JSON",
            help="The instance's result, a JSON object: the kwargs of the cascade.",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the skipped instance as JSON."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = check_name_argument(options["instance"], "the instance name")
        result = (
            parse_json_object(options["result"], "--result")
            if options["result"] is not None
            else None
        )
        manager = get_manager(options["session"])
        with manager_errors():
            skipped = manager.skip_failed_instance(name, cascade=options["cascade"], result=result)
        if options["json"]:
            write_json(
                self.stdout,
                {
                    "session": manager.session_uid,
                    "instance": skipped.name,
                    "status": skipped.status,
                    "cascade": options["cascade"],
                    "result": skipped.result,
                },
            )
        else:
            fired = f"; fired {skipped.task_name!r}" if options["cascade"] else ""
            self.stdout.write(
                f"Skipped {printable(skipped.name)} in session {manager.session_uid!r}{fired}"
            )
        wait_for_task_threads()
