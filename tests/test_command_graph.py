"""The ``triggers_graph`` management command."""

import pytest
from django.core.management import CommandError

from tests.test_commands import ECHO, database_rows, run_command


@pytest.fixture
def session(trigger_manager):
    trigger_manager.update_configuration(
        {
            "t_import": {"after": ["pageReceived"], "unless": ["cancelled"], "run": ECHO},
            "t_score": {"after": ["t_import"], "run": ECHO},
        }
    )
    return trigger_manager


def graph(manager, *args):
    stdout, _ = run_command("triggers_graph", manager.session_uid, *args)
    return stdout


def test_graph_prints_a_mermaid_flowchart_by_default(session):
    stdout = graph(session)

    assert stdout.startswith("flowchart")
    for name in ("t_import", "t_score", "pageReceived", "cancelled"):
        assert name in stdout


def test_graph_prints_graphviz_dot_on_request(session):
    stdout = graph(session, "--format", "dot")

    assert stdout.startswith("digraph")
    for name in ("t_import", "t_score", "pageReceived", "cancelled"):
        assert name in stdout


def test_graph_changes_nothing(session):
    before = database_rows()

    graph(session)
    graph(session, "--format", "dot")

    assert database_rows() == before


def test_graph_refuses_an_unknown_format_on_the_command_line(session):
    with pytest.raises(CommandError, match="invalid choice: 'svg'"):
        graph(session, "--format", "svg")


def test_graph_refuses_an_unknown_format_given_as_an_option(session):
    with pytest.raises(CommandError, match="unknown format 'svg'"):
        run_command("triggers_graph", session.session_uid, format="svg")
