"""The workflow graph of a session, and its Mermaid, DOT and SVG renderings."""

import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from django_triggers.graph import (
    Edge,
    Focus,
    Graph,
    Node,
    focus,
    merge_cascades,
    session_graph,
    to_dot,
    to_mermaid,
    to_svg,
    workflow_order,
)
from django_triggers.manager import TriggerManager
from django_triggers.runners import BaseTaskRunner
from tests.helpers import set_status

ECHO = "tests.Echo"
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(\"x\") & 'y'</script>"


class IdleRunner(BaseTaskRunner):
    """Accepts instances and leaves them scheduled."""

    name = "test_graph.idle"

    def run(self, manager, task_instance):
        pass


def task(after, **directives):
    return {"after": after, "run": ECHO, "using": IdleRunner.name, **directives}


@pytest.fixture
def manager(db):
    return TriggerManager("graph-session")


def edges_of(graph):
    return {(edge.source, edge.target, edge.kind) for edge in graph.edges}


def nodes_by_id(graph):
    return {node.id: node for node in graph.nodes}


def parse_svg(svg):
    return ET.fromstring(svg)


def svg_texts(root):
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


# -- session_graph ------------------------------------------------------------------


def test_an_after_trigger_is_a_trigger_node_with_an_after_edge_to_its_task(manager):
    manager.update_configuration({"t_a": task(["a", "b"])})

    graph = session_graph(manager)

    assert nodes_by_id(graph) == {
        "trigger:a": Node("trigger:a", "a", "trigger", None),
        "trigger:b": Node("trigger:b", "b", "trigger", None),
        "task:t_a": Node("task:t_a", "t_a", "task", None),
    }
    assert edges_of(graph) == {
        ("trigger:a", "task:t_a", "after"),
        ("trigger:b", "task:t_a", "after"),
    }


def test_the_and_every_trigger_has_an_and_every_edge_and_no_after_edge(manager):
    manager.update_configuration({"t_pages": task(["start"], andEvery="page")})

    graph = session_graph(manager)

    assert edges_of(graph) == {
        ("trigger:start", "task:t_pages", "after"),
        ("trigger:page", "task:t_pages", "andEvery"),
    }


def test_unless_triggers_have_unless_edges(manager):
    manager.update_configuration({"t_a": task(["a"], unless=["cancel", "stop"])})

    graph = session_graph(manager)

    assert ("trigger:cancel", "task:t_a", "unless") in edges_of(graph)
    assert ("trigger:stop", "task:t_a", "unless") in edges_of(graph)
    assert nodes_by_id(graph)["trigger:cancel"].kind == "trigger"


def test_a_task_whose_trigger_another_task_waits_for_has_a_cascade_edge(manager):
    manager.update_configuration({"t_a": task(["a"]), "t_b": task(["t_a"])})

    graph = session_graph(manager)

    assert edges_of(graph) == {
        ("trigger:a", "task:t_a", "after"),
        ("task:t_a", "trigger:t_a", "cascade"),
        ("trigger:t_a", "task:t_b", "after"),
    }


def test_a_task_nobody_waits_for_has_no_cascade_edge_nor_trigger_node(manager):
    manager.update_configuration({"t_a": task(["a"])})

    graph = session_graph(manager)

    assert "trigger:t_a" not in nodes_by_id(graph)
    assert all(edge.kind != "cascade" for edge in graph.edges)


def test_a_fired_trigger_no_task_listens_to_is_a_fired_node_without_edges(manager):
    manager.update_configuration({"t_a": task(["a", "b"])})
    manager.fire("stray", {"x": 1})
    manager.fire("a")

    graph = session_graph(manager)

    nodes = nodes_by_id(graph)
    assert nodes["trigger:stray"] == Node("trigger:stray", "stray", "trigger", "fired")
    assert nodes["trigger:a"].status == "fired"
    assert nodes["trigger:b"].status is None
    assert not [edge for edge in graph.edges if "trigger:stray" in (edge.source, edge.target)]


def test_a_task_status_is_the_status_of_its_latest_instance(manager):
    manager.update_configuration({"t_a": task(["a"]), "t_b": task(["b", "c"]), "t_c": task(["z"])})
    manager.fire("a")
    set_status(manager, "t_a#0", "failed")
    manager.replay_failed_instance("t_a#0")  # t_a#0 replayed, t_a#1 scheduled
    manager.fire("b")

    nodes = nodes_by_id(session_graph(manager))

    assert nodes["task:t_a"].status == "scheduled"
    assert nodes["task:t_b"].status == "unstarted"
    assert nodes["task:t_c"].status is None


def test_nodes_are_triggers_then_tasks_each_sorted_by_name_and_edges_are_sorted(manager):
    manager.update_configuration({"t_z": task(["m", "b"]), "t_a": task(["t_z"], unless=["c"])})
    first = session_graph(manager)

    assert [node.id for node in first.nodes] == [
        "trigger:b",
        "trigger:c",
        "trigger:m",
        "trigger:t_z",
        "task:t_a",
        "task:t_z",
    ]
    keys = [(edge.source, edge.target) for edge in first.edges]
    assert keys == sorted(keys)
    assert session_graph(manager) == first


def test_a_session_without_configuration_or_fires_has_an_empty_graph(manager):
    assert session_graph(manager) == Graph(nodes=(), edges=())


# -- SVG ----------------------------------------------------------------------------


def chain_graph():
    return Graph(
        nodes=(
            Node("trigger:a", "a", "trigger", "fired"),
            Node("trigger:cancel", "cancel", "trigger", None),
            Node("trigger:page", "page", "trigger", "fired"),
            Node("trigger:t_a", "t_a", "trigger", None),
            Node("task:t_a", "t_a", "task", "failed"),
            Node("task:t_b", "t_b", "task", None),
        ),
        edges=(
            Edge("task:t_a", "trigger:t_a", "cascade"),
            Edge("trigger:a", "task:t_a", "after"),
            Edge("trigger:cancel", "task:t_b", "unless"),
            Edge("trigger:page", "task:t_b", "andEvery"),
            Edge("trigger:t_a", "task:t_b", "after"),
        ),
    )


def node_groups(root):
    return {
        group.find(f"{SVG}title").text: group
        for group in root.iter(f"{SVG}g")
        if "node" in group.get("class", "").split()
    }


def node_rect(root, title_prefix):
    [group] = [g for title, g in node_groups(root).items() if title.startswith(title_prefix)]
    return group.find(f"{SVG}rect")


def test_the_svg_is_well_formed_xml_with_a_node_group_per_node_and_cascades_in_their_task():
    root = parse_svg(to_svg(chain_graph()))

    assert root.tag == f"{SVG}svg"
    assert sorted(node_groups(root)) == sorted(
        [
            "trigger a: fired",
            "trigger cancel: not fired",
            "trigger page: fired",
            "task t_a: failed",
            "task t_b: no instance yet",
        ]
    )


def test_the_svg_escapes_names_from_users():
    graph = Graph(
        nodes=(
            Node(f"trigger:{HOSTILE}", HOSTILE, "trigger", "fired"),
            Node("task:t<b>", "t<b>", "task", "finished"),
        ),
        edges=(Edge(f"trigger:{HOSTILE}", "task:t<b>", "after"),),
    )

    svg = to_svg(graph)

    assert "<script" not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;) &amp; &#x27;y&#x27;&lt;/script&gt;" in svg
    assert HOSTILE in svg_texts(parse_svg(svg))


def test_control_characters_in_names_are_spelled_out_so_the_svg_stays_xml():
    graph = Graph(nodes=(Node("trigger:a\x01b\x00", "a\x01b\x00", "trigger", None),), edges=())

    root = parse_svg(to_svg(graph))

    assert "a\\x01b\\x00" in svg_texts(root)


def test_task_boxes_are_coloured_by_status_and_fired_triggers_are_filled():
    root = parse_svg(to_svg(chain_graph()))

    failed = node_rect(root, "task t_a")
    no_instance = node_rect(root, "task t_b")
    fired = node_rect(root, "trigger a:")
    not_fired = node_rect(root, "trigger cancel")
    assert failed.get("fill") == "#fee2e2"
    assert no_instance.get("fill") == "#ffffff"
    assert no_instance.get("stroke-dasharray")
    assert fired.get("fill") != not_fired.get("fill")
    assert float(fired.get("rx")) == float(fired.get("height")) / 2  # a pill


def test_each_edge_kind_is_drawn_in_its_own_style():
    root = parse_svg(to_svg(chain_graph()))

    styles = {
        path.get("class").split()[1]: (
            path.get("stroke"),
            path.get("stroke-dasharray"),
            path.get("stroke-width"),
        )
        for path in root.iter(f"{SVG}path")
        if "edge" in path.get("class", "").split()
    }
    assert set(styles) == {"after", "andEvery", "unless", "cascade"}
    assert len(set(styles.values())) == 4
    assert styles["unless"][1]  # dashed
    assert styles["after"][1] is None  # solid


def test_the_svg_has_a_legend_naming_edge_kinds_and_statuses():
    root = parse_svg(to_svg(chain_graph()))

    [legend] = [g for g in root.iter(f"{SVG}g") if g.get("class") == "legend"]
    texts = svg_texts(legend)
    assert "after" in texts
    assert "unless" in texts
    assert "task failed" in texts
    assert "trigger fired" in texts


def test_columns_follow_the_longest_path_from_the_sources():
    root = parse_svg(to_svg(chain_graph()))

    def centre(prefix):
        rect = node_rect(root, prefix)
        return float(rect.get("x")) + float(rect.get("width")) / 2

    assert centre("trigger a:") < centre("task t_a") < centre("task t_b")
    # A source trigger sits in the column just before the task it leads to.
    assert centre("trigger page") == centre("task t_a")
    assert centre("trigger cancel") == centre("task t_a")


def test_a_cycle_through_unless_still_renders():
    graph = Graph(
        nodes=(
            Node("trigger:t_a", "t_a", "trigger", None),
            Node("trigger:t_b", "t_b", "trigger", None),
            Node("task:t_a", "t_a", "task", None),
            Node("task:t_b", "t_b", "task", None),
        ),
        edges=(
            Edge("task:t_a", "trigger:t_a", "cascade"),
            Edge("task:t_b", "trigger:t_b", "cascade"),
            Edge("trigger:t_a", "task:t_b", "after"),
            Edge("trigger:t_b", "task:t_a", "unless"),
        ),
    )

    root = parse_svg(to_svg(graph))

    # Each task's own trigger is drawn as part of it: two boxes, two edges between them.
    assert len(node_groups(root)) == 2
    assert len([p for p in root.iter(f"{SVG}path") if "edge" in p.get("class", "")]) == 2


def test_an_empty_graph_renders_a_note_instead_of_a_drawing():
    root = parse_svg(to_svg(Graph(nodes=(), edges=())))

    assert "No task is configured and no trigger has fired yet." in svg_texts(root)
    assert not node_groups(root)


def test_the_svg_of_a_session_is_self_contained(manager):
    manager.update_configuration({"t_a": task(["a"]), "t_b": task(["t_a"], andEvery="p")})

    svg = to_svg(session_graph(manager))

    parse_svg(svg)
    assert not re.search(r"(href|src)=", svg)
    assert "@import" not in svg
    assert "url(http" not in svg


# -- Mermaid ------------------------------------------------------------------------


def test_mermaid_is_a_left_to_right_flowchart_with_one_line_per_edge():
    text = to_mermaid(chain_graph())

    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '    n0(["a"])' in lines
    assert '    n4["t_a<br/>failed"]' in lines
    assert "    n4 -->|cascade| n3" in lines
    assert "    n0 --> n4" in lines
    assert "    n1 -.->|unless| n5" in lines
    assert "    n2 ==>|every| n5" in lines
    assert "    class n4 status_failed" in lines
    assert "    class n0 trigger_fired" in lines


def test_mermaid_labels_escape_quotes_brackets_and_markup():
    graph = Graph(nodes=(Node(f"trigger:{HOSTILE}", HOSTILE, "trigger", None),), edges=())

    text = to_mermaid(graph)

    label = re.search(r'n0\(\["(.*)"\]\)', text).group(1)
    assert label == ("#60;script#62;alert#40;#34;x#34;#41; #38; #39;y#39;#60;/script#62;")
    assert '"' not in label
    assert "<" not in text.replace("<br/>", "")


def test_mermaid_labels_spell_out_newlines_so_each_node_stays_on_its_line():
    graph = Graph(nodes=(Node("trigger:a\nb", "a\nb", "trigger", None),), edges=())

    lines = to_mermaid(graph).splitlines()

    assert '    n0(["a#92;x0ab"])' in lines


# -- DOT ----------------------------------------------------------------------------


def test_dot_is_a_left_to_right_digraph_with_quoted_ids():
    text = to_dot(chain_graph())

    assert text.startswith("digraph triggers {\n    rankdir=LR;\n")
    assert text.rstrip().endswith("}")
    assert '"trigger:a" -> "task:t_a" [color="#4b5563"];' in text
    assert '"trigger:cancel" -> "task:t_b" [color="#dc2626", style=dashed, label="unless"];' in text
    assert '"task:t_a" [label="t_a\\nfailed", shape=box, style="filled"' in text


def test_dot_escapes_quotes_and_backslashes():
    name = 'say "hi" \\ bye'
    graph = Graph(nodes=(Node(f"trigger:{name}", name, "trigger", None),), edges=())

    text = to_dot(graph)

    assert '"trigger:say \\"hi\\" \\\\ bye" [label="say \\"hi\\" \\\\ bye",' in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_accepts_the_dot_text_of_hostile_names():
    name = 'q"uote \\ back\nline <b>'
    graph = Graph(
        nodes=(
            Node(f"trigger:{name}", name, "trigger", "fired"),
            Node("task:t", "t", "task", "finished"),
        ),
        edges=(Edge(f"trigger:{name}", "task:t", "after"),),
    )

    result = subprocess.run(
        ["dot", "-Tsvg"], input=to_dot(graph), capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "q&quot;uote \\ back\\x0aline &lt;b&gt;" in result.stdout


# -- big workflows -------------------------------------------------------------------


def big_graph(tasks=400, chains=20, failed=(), waiting=()):
    """``tasks`` tasks in ``chains`` chains: task i waits for task i - chains."""
    names = [f"t_{index:04d}" for index in range(tasks)]
    status = {name: "finished" for name in names}
    status.update({name: "failed" for name in failed})
    status.update({name: "unstarted" for name in waiting})
    nodes = [Node("trigger:start", "start", "trigger", "fired")]
    edges = []
    for index, name in enumerate(names):
        source = "trigger:start" if index < chains else f"trigger:{names[index - chains]}"
        edges.append(Edge(source, f"task:{name}", "after"))
        if index + chains < tasks:
            nodes.append(Node(f"trigger:{name}", name, "trigger", "fired"))
            edges.append(Edge(f"task:{name}", f"trigger:{name}", "cascade"))
    nodes += [Node(f"task:{name}", name, "task", status[name]) for name in names]
    return Graph(nodes=tuple(nodes), edges=tuple(edges))


def test_a_big_workflow_wraps_into_bands_no_wider_than_its_limit():
    root = parse_svg(to_svg(big_graph()))

    assert float(root.get("width")) <= 1400
    tops = {float(node_rect(root, f"task t_{i:04d}").get("y")) for i in range(0, 400, 20)}
    assert len(tops) > 1  # later steps wrap below the first ones


def test_a_tall_column_is_cut_into_columns_side_by_side():
    graph = Graph(
        nodes=(
            Node("trigger:start", "start", "trigger", "fired"),
            *(Node(f"task:t_{i:02d}", f"t_{i:02d}", "task", None) for i in range(40)),
        ),
        edges=tuple(Edge("trigger:start", f"task:t_{i:02d}", "after") for i in range(40)),
    )

    root = parse_svg(to_svg(graph))

    lefts = {float(node_rect(root, f"task t_{i:02d}").get("x")) for i in range(40)}
    assert len(lefts) == 3
    assert float(root.get("height")) < 40 * 40


def test_focus_keeps_a_small_graph_whole():
    graph = chain_graph()

    assert focus(graph, 50) == Focus(graph, 2, 2)


def test_focus_centres_on_failed_and_waiting_tasks_and_their_neighbours():
    graph = big_graph(failed=["t_0200"], waiting=["t_0221"])

    part = focus(graph, 30)

    ids = {node.id for node in part.graph.nodes}
    assert len(ids) <= 30
    assert {"task:t_0200", "task:t_0221"} <= ids
    # What it waits for, the task before it, and the task waiting for it.
    assert {"trigger:t_0180", "task:t_0180", "trigger:t_0200", "task:t_0220"} <= ids
    assert (part.tasks_shown, part.tasks_total) == (len({i for i in ids if "task:" in i}), 400)
    assert not part.is_whole
    assert all(e.source in ids and e.target in ids for e in part.graph.edges)


def test_focus_does_not_go_through_a_trigger_fired_by_the_application():
    graph = big_graph(failed=["t_0003"])

    ids = {node.id for node in focus(graph, 30).graph.nodes}

    assert "trigger:start" in ids
    assert "task:t_0004" not in ids  # another task after start: not a neighbour


def test_merge_cascades_draws_edges_from_the_task_itself():
    merged = merge_cascades(chain_graph())

    assert "trigger:t_a" not in {node.id for node in merged.nodes}
    assert Edge("task:t_a", "task:t_b", "after") in merged.edges
    assert all(edge.kind != "cascade" for edge in merged.edges)


def test_workflow_order_puts_what_runs_first_first():
    order = workflow_order(
        {
            "archive": ["send"],
            "send": ["validate"],
            "validate": ["start"],
            "audit": ["start", "page"],
            "loop_a": ["loop_b"],
            "loop_b": ["loop_a"],
        }
    )

    assert order.index("validate") < order.index("send") < order.index("archive")
    assert order.index("validate") < order.index("audit")  # same depth: as configured
    assert sorted(order) == sorted(["archive", "send", "validate", "audit", "loop_a", "loop_b"])


def test_the_svg_of_a_thousand_tasks_is_laid_out_quickly():
    graph = big_graph(tasks=1000)

    started = time.perf_counter()
    to_svg(graph)

    assert time.perf_counter() - started < 10
