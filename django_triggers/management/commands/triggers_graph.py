from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_triggers.graph import Graph, session_graph, to_dot, to_mermaid
from django_triggers.management.base import get_manager

RENDERERS: dict[str, Callable[[Graph], str]] = {"mermaid": to_mermaid, "dot": to_dot}


class Command(BaseCommand):
    help = (
        "Print a session's tasks and triggers as a graph: Mermaid (the default; GitHub, GitLab "
        "and many wikis render it) or Graphviz dot (pipe it to 'dot -Tsvg')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The uid of the session.")
        parser.add_argument(
            "--format",
            choices=sorted(RENDERERS),
            default="mermaid",
            help="Output format (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        render = RENDERERS.get(options["format"])
        if render is None:
            raise CommandError(
                f"unknown format {options['format']!r} (choose from {', '.join(sorted(RENDERERS))})"
            )
        manager = get_manager(options["session"], read_only=True)
        self.stdout.write(render(session_graph(manager)))
