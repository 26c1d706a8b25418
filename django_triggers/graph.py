"""The workflow of a session as a graph: which triggers start, repeat or cancel which tasks.

:func:`session_graph` reads a session's configuration, its fires and the
status of each task's latest instance; :func:`to_mermaid`, :func:`to_dot`
and :func:`to_svg` render the result. Trigger and task names come from
application code and payloads, so every renderer escapes them for its format.
The SVG is laid out here, in Python, so the admin can show it without a
browser-side library, a network call or a Graphviz binary.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from django.db.models import OuterRef, Subquery

from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance
from django_triggers.text import printable

if TYPE_CHECKING:
    from django_triggers.manager import TriggerManager

TRIGGER = "trigger"
TASK = "task"
FIRED = "fired"

AFTER = "after"
AND_EVERY = "andEvery"
UNLESS = "unless"
CASCADE = "cascade"
EDGE_KINDS = (AFTER, AND_EVERY, UNLESS, CASCADE)


@dataclass(frozen=True)
class Node:
    """A trigger (``kind="trigger"``) or a configured task (``kind="task"``).

    ``status`` is, for a task, the status of its latest instance (``None``
    while it has none); for a trigger, ``"fired"`` once it has fired in the
    session, else ``None``.
    """

    id: str
    label: str
    kind: str
    status: str | None


@dataclass(frozen=True)
class Edge:
    """``source`` leads to ``target``; ``kind`` is one of :data:`EDGE_KINDS`.

    ``after``, ``andEvery`` and ``unless`` go from a trigger to a task that
    has it in that directive; ``cascade`` goes from a task to the trigger of
    its own name, which it fires when it finishes.
    """

    source: str
    target: str
    kind: str


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def trigger_id(name: str) -> str:
    return f"{TRIGGER}:{name}"


def task_id(name: str) -> str:
    return f"{TASK}:{name}"


def workflow_order(waits_for: Mapping[str, Iterable[str]]) -> list[str]:
    """Task names in the order their work happens: what runs first comes first.

    ``waits_for`` maps each task, in the order it was configured, to the
    triggers it runs after. A task waiting for another task's trigger (its
    cascade) comes after that task; tasks at the same depth keep the order
    they were configured in. A cycle is broken where it is met.
    """
    names = list(waits_for)
    position = {name: index for index, name in enumerate(names)}
    depth: dict[str, int] = {}
    for name in names:
        if name in depth:
            continue
        stack, on_stack = [name], {name}
        while stack:
            current = stack[-1]
            pending = next(
                (
                    before
                    for before in waits_for[current]
                    if before in position and before not in depth and before not in on_stack
                ),
                None,
            )
            if pending is not None:
                stack.append(pending)
                on_stack.add(pending)
                continue
            stack.pop()
            on_stack.discard(current)
            depth[current] = max(
                (depth[before] + 1 for before in waits_for[current] if before in depth),
                default=0,
            )
    return sorted(names, key=lambda name: (depth[name], position[name]))


def session_graph(manager: TriggerManager, configs: Iterable[TaskConfig] | None = None) -> Graph:
    """The graph of ``manager``'s session, in a deterministic order.

    Nodes: triggers sorted by name, then tasks sorted by name. Edges: sorted
    by source, target and kind. ``configs``, the session's configurations if
    the caller has read them already, saves reading them again.
    """
    session, database = manager.session, manager.database
    if configs is None:
        configs = TaskConfig.objects.using(database).filter(session=session)
    configs = sorted(configs, key=lambda config: config.name)
    fired = set(
        FiredTrigger.objects.using(database)
        .filter(session=session)
        .order_by()
        .values_list("trigger_name", flat=True)
        .distinct()
    )
    latest_number = (
        TaskInstance.objects.filter(config=OuterRef("config")).order_by("-number").values("number")
    )
    latest_status = dict(
        TaskInstance.objects.using(database)
        .filter(session=session, number=Subquery(latest_number[:1]))
        .order_by()
        .values_list("task_name", "status")
    )

    edges: set[Edge] = set()
    listened: set[str] = set()
    for config in configs:
        target = task_id(config.name)
        for name in config.after:
            kind = AND_EVERY if name == config.and_every else AFTER
            edges.add(Edge(trigger_id(name), target, kind))
            listened.add(name)
        for name in config.unless:
            edges.add(Edge(trigger_id(name), target, UNLESS))
            listened.add(name)
    task_names = {config.name for config in configs}
    for name in sorted(task_names & listened):
        edges.add(Edge(task_id(name), trigger_id(name), CASCADE))

    trigger_nodes = [
        Node(trigger_id(name), name, TRIGGER, FIRED if name in fired else None)
        for name in sorted(listened | fired)
    ]
    task_nodes = [
        Node(task_id(config.name), config.name, TASK, latest_status.get(config.name))
        for config in configs
    ]
    ordered_edges = sorted(
        edges, key=lambda edge: (edge.source, edge.target, EDGE_KINDS.index(edge.kind))
    )
    return Graph(nodes=(*trigger_nodes, *task_nodes), edges=tuple(ordered_edges))


#: Statuses of the tasks a focused graph centres on, most urgent first.
FOCUS_STATUSES = (
    TaskInstance.FAILED,
    TaskInstance.RUNNING,
    TaskInstance.SCHEDULED,
    TaskInstance.UNSTARTED,
)


@dataclass(frozen=True)
class Focus:
    """Part of a graph: what needs attention and what is next to it."""

    graph: Graph
    #: How many tasks the part holds, and how many the whole graph does.
    tasks_shown: int
    tasks_total: int

    @property
    def is_whole(self) -> bool:
        return self.tasks_shown == self.tasks_total


def task_count(graph: Graph) -> int:
    return sum(1 for node in graph.nodes if node.kind == TASK)


def focus(graph: Graph, limit: int) -> Focus:
    """The part of ``graph`` around the tasks needing attention, of at most ``limit`` nodes.

    A graph of ``limit`` nodes or fewer is returned whole. Otherwise the part
    holds the failed tasks first, then those running, scheduled and waiting
    (a third of ``limit`` at most), then, as room allows, what is next to
    each: the triggers it waits for and the tasks firing them, the tasks
    waiting for its own trigger. Without such tasks, it centres on the tasks
    without an instance yet, else on the first tasks.
    """
    total = task_count(graph)
    if len(graph.nodes) <= limit:
        return Focus(graph, total, total)
    tasks = [node for node in graph.nodes if node.kind == TASK]
    rank = {status: index for index, status in enumerate(FOCUS_STATUSES)}
    central = (
        sorted(
            (node for node in tasks if node.status in rank),
            key=lambda node: rank[node.status or ""],
        )
        or [node for node in tasks if node.status is None]
        or tasks
    )
    neighbours: dict[str, list[str]] = defaultdict(list)
    for edge in graph.edges:
        neighbours[edge.source].append(edge.target)
        neighbours[edge.target].append(edge.source)
    chosen: dict[str, None] = {}
    for node in central[: max(limit // 3, 1)]:
        chosen[node.id] = None
    # Breadth first from the central tasks: a trigger and the tasks beyond it.
    # A trigger the application fires (``start``, ``page``) may lead to
    # hundreds of tasks: it is shown, but not gone through.
    cascaded = {edge.target for edge in graph.edges if edge.kind == CASCADE}
    frontier = list(chosen)
    for _ in range(4):
        following = []
        for node_id in frontier:
            if node_id.startswith(f"{TRIGGER}:") and node_id not in cascaded:
                continue
            for other in neighbours[node_id]:
                if len(chosen) >= limit:
                    break
                if other not in chosen:
                    chosen[other] = None
                    following.append(other)
        frontier = following
    nodes = tuple(node for node in graph.nodes if node.id in chosen)
    edges = tuple(e for e in graph.edges if e.source in chosen and e.target in chosen)
    return Focus(Graph(nodes, edges), task_count(Graph(nodes, ())), total)


def merge_cascades(graph: Graph) -> Graph:
    """``graph`` with each task's own trigger drawn as part of the task.

    The trigger a task fires when it finishes (its cascade) is not a node of
    its own: the edges leaving it leave the task. Triggers fired by the
    application and the edges from them stay as they are.
    """
    owner = {edge.target: edge.source for edge in graph.edges if edge.kind == CASCADE}
    nodes = tuple(node for node in graph.nodes if node.id not in owner)
    edges = tuple(
        Edge(owner.get(edge.source, edge.source), edge.target, edge.kind)
        for edge in graph.edges
        if edge.kind != CASCADE
    )
    return Graph(nodes, edges)


# -- text ---------------------------------------------------------------------


def _status_text(node: Node) -> str:
    if node.kind == TASK:
        return node.status or "no instance yet"
    return "fired" if node.status == FIRED else "not fired"


# -- Mermaid ------------------------------------------------------------------

_MERMAID_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.:/@+=,"
)

_MERMAID_LINKS = {
    AFTER: "-->",
    AND_EVERY: "==>|every|",
    UNLESS: "-.->|unless|",
    CASCADE: "-->|cascade|",
}


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: anything beyond plain characters as ``#<code>;``."""
    return "".join(char if char in _MERMAID_SAFE else f"#{ord(char)};" for char in printable(text))


def to_mermaid(graph: Graph) -> str:
    """The graph as a Mermaid ``flowchart LR``.

    Node ids are generated (``n0``, ``n1``...); names appear only in quoted,
    entity-escaped labels.
    """
    ids = {node.id: f"n{index}" for index, node in enumerate(graph.nodes)}
    lines = ["flowchart LR"]
    for name, style in _STATUS_STYLES.items():
        lines.append(
            f"    classDef {_mermaid_class(name)} fill:{style.fill},stroke:{style.stroke},"
            f"color:{style.text}"
        )
    for name, style in (("trigger_fired", _TRIGGER_FIRED), ("trigger_waiting", _TRIGGER_WAITING)):
        lines.append(f"    classDef {name} fill:{style.fill},stroke:{style.stroke}")
    for node in graph.nodes:
        label = _mermaid_text(node.label)
        if node.kind == TRIGGER:
            lines.append(f'    {ids[node.id]}(["{label}"])')
        else:
            lines.append(f'    {ids[node.id]}["{label}<br/>{_mermaid_text(_status_text(node))}"]')
    for edge in graph.edges:
        lines.append(f"    {ids[edge.source]} {_MERMAID_LINKS[edge.kind]} {ids[edge.target]}")
    for node in graph.nodes:
        if node.kind == TRIGGER:
            css_class = "trigger_fired" if node.status == FIRED else "trigger_waiting"
        else:
            css_class = _mermaid_class(node.status)
        lines.append(f"    class {ids[node.id]} {css_class}")
    return "\n".join(lines) + "\n"


def _mermaid_class(status: str | None) -> str:
    return f"status_{status or 'none'}"


# -- Graphviz DOT -------------------------------------------------------------

_DOT_EDGE_ATTRIBUTES = {
    AFTER: 'color="#4b5563"',
    AND_EVERY: 'color="#2563eb", penwidth=2.5, label="every"',
    UNLESS: 'color="#dc2626", style=dashed, label="unless"',
    CASCADE: 'color="#059669", style=dotted',
}


def _dot_string(*lines: str) -> str:
    """A double-quoted DOT string of ``lines``: backslashes and quotes escaped.

    In labels, the lines are joined by DOT's own line break (``\\n``).
    """
    escaped = (printable(line).replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz DOT, left to right."""
    lines = [
        "digraph triggers {",
        "    rankdir=LR;",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]
    for node in graph.nodes:
        if node.kind == TRIGGER:
            style = _TRIGGER_FIRED if node.status == FIRED else _TRIGGER_WAITING
            label = _dot_string(node.label)
            shape = 'shape=box, style="rounded,filled"'
        else:
            style = _STATUS_STYLES[node.status]
            label = _dot_string(node.label, _status_text(node))
            shape = 'shape=box, style="filled' + (',dashed"' if node.status is None else '"')
        lines.append(
            f"    {_dot_string(node.id)} [label={label}, {shape}, "
            f'fillcolor="{style.fill}", color="{style.stroke}", fontcolor="{style.text}"];'
        )
    for edge in graph.edges:
        lines.append(
            f"    {_dot_string(edge.source)} -> {_dot_string(edge.target)} "
            f"[{_DOT_EDGE_ATTRIBUTES[edge.kind]}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- SVG ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    fill: str
    stroke: str
    text: str = "#111827"


_STATUS_STYLES: dict[str | None, _Style] = {
    None: _Style("#ffffff", "#9ca3af", "#4b5563"),
    TaskInstance.UNSTARTED: _Style("#f3f4f6", "#6b7280"),
    TaskInstance.SCHEDULED: _Style("#dbeafe", "#2563eb"),
    TaskInstance.RUNNING: _Style("#fef3c7", "#d97706"),
    TaskInstance.FINISHED: _Style("#dcfce7", "#16a34a"),
    TaskInstance.FAILED: _Style("#fee2e2", "#dc2626", "#7f1d1d"),
    TaskInstance.REPLAYED: _Style("#ede9fe", "#7c3aed"),
    TaskInstance.SKIPPED: _Style("#f5f5f4", "#78716c"),
    TaskInstance.ABANDONED: _Style("#e5e7eb", "#4b5563", "#4b5563"),
}
_TRIGGER_FIRED = _Style("#fde68a", "#b45309")
_TRIGGER_WAITING = _Style("#ffffff", "#b45309")

_EDGE_STYLES = {
    # kind: (colour, width, dash pattern, legend text)
    AFTER: ("#4b5563", 1.5, "", "after"),
    AND_EVERY: ("#2563eb", 2.5, "", "andEvery (each fire: a new instance)"),
    UNLESS: ("#dc2626", 1.5, "6 4", "unless"),
    CASCADE: ("#059669", 1.5, "2 3", "after a task (when it finishes)"),
}

_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_FONT_SIZE = 12
_SMALL_FONT_SIZE = 10
_CHAR_WIDTH = 7.0  # generous average width of a 12px sans-serif character
_MAX_LABEL = 40
_PAD_X = 12
_TASK_HEIGHT = 40
_TRIGGER_HEIGHT = 28
_ROW_GAP = 16
_LAYER_GAP = 64
_MARGIN = 16
_WAYPOINT_HEIGHT = 6
_WAYPOINT_WIDTH = 24
#: The most boxes stacked in one column, and the widest a band of columns gets
#: before the next columns wrap below it.
_MAX_ROWS = 14
_MAX_WIDTH = 1400
_BAND_GAP = 40


@dataclass
class _Box:
    """A node's place in the drawing, or (``node`` is ``None``) a long edge's waypoint."""

    key: str
    node: Node | None
    text: str = ""
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0
    layer: int = 0

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass
class _Drawing:
    boxes: dict[str, _Box]
    #: Each edge with the waypoints it passes through, one per column it crosses.
    routes: list[tuple[Edge, list[_Box]]]
    width: float
    height: float


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "\u2026"


def _text_width(text: str, size: int = _FONT_SIZE) -> float:
    return len(text) * _CHAR_WIDTH * size / _FONT_SIZE


def _attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def _layers(graph: Graph) -> dict[str, int]:
    """Each node's column: the length of the longest path reaching it from a source.

    Sources then move right, next to the first node they lead to.

    Cycles (possible only through ``unless`` edges) are broken first: edges
    other than ``unless`` are kept as long as they close no cycle, then
    ``unless`` edges on the same terms.
    """
    successors: dict[str, list[str]] = defaultdict(list)

    def reaches(start: str, goal: str) -> bool:
        seen, stack = {start}, [start]
        while stack:
            current = stack.pop()
            if current == goal:
                return True
            for following in successors[current]:
                if following not in seen:
                    seen.add(following)
                    stack.append(following)
        return False

    def keep_unless_acyclic(edges: list[Edge]) -> None:
        for edge in edges:
            if edge.source != edge.target and not reaches(edge.target, edge.source):
                successors[edge.source].append(edge.target)

    firm = [edge for edge in graph.edges if edge.kind != UNLESS]
    if _acyclic(firm):
        # The usual case, checked once rather than edge by edge.
        for edge in firm:
            successors[edge.source].append(edge.target)
    else:
        keep_unless_acyclic(firm)
    keep_unless_acyclic([edge for edge in graph.edges if edge.kind == UNLESS])

    predecessors: dict[str, list[str]] = defaultdict(list)
    for source, targets in successors.items():
        for target in targets:
            predecessors[target].append(source)
    layer: dict[str, int] = {}

    def depth(node_id: str) -> int:
        # Iterative longest path, so that long chains cannot exhaust the stack.
        stack = [node_id]
        while stack:
            current = stack[-1]
            pending = [p for p in predecessors[current] if p not in layer]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            layer[current] = max((layer[p] + 1 for p in predecessors[current]), default=0)
        return layer[node_id]

    for node in graph.nodes:
        if node.id not in layer:
            depth(node.id)
    # A trigger nothing leads to sits just before the first task that uses it,
    # rather than in the first column, far from it.
    for node in graph.nodes:
        if not predecessors[node.id] and successors[node.id]:
            layer[node.id] = min(layer[target] for target in successors[node.id]) - 1
    return layer


def _acyclic(edges: list[Edge]) -> bool:
    """Whether ``edges`` form no cycle (Kahn's algorithm)."""
    successors: dict[str, list[str]] = defaultdict(list)
    incoming: dict[str, int] = defaultdict(int)
    for edge in edges:
        successors[edge.source].append(edge.target)
        incoming[edge.target] += 1
        incoming.setdefault(edge.source, 0)
    ready = [node for node, count in incoming.items() if count == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for target in successors[node]:
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return seen == len(incoming)


def _layout(graph: Graph) -> _Drawing:
    """Place nodes in columns, and route edges that span columns through waypoints."""
    layer = _layers(graph)
    columns: list[list[_Box]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    boxes: dict[str, _Box] = {}
    for node in graph.nodes:
        box = _Box(node.id, node, _shorten(printable(node.label)))
        if node.kind == TASK:
            status_width = _text_width(_status_text(node), _SMALL_FONT_SIZE)
            box.width = max(_text_width(box.text), status_width) + 2 * _PAD_X
            box.height = _TASK_HEIGHT
        else:
            box.width = _text_width(box.text) + 2 * _PAD_X + _TRIGGER_HEIGHT / 2
            box.height = _TRIGGER_HEIGHT
        boxes[node.id] = box
        columns[layer[node.id]].append(box)

    # An edge spanning several columns gets a waypoint in each column between,
    # which takes part in the ordering below like a (very small) node.
    neighbours: dict[str, list[str]] = defaultdict(list)
    routes: list[tuple[Edge, list[_Box]]] = []
    for index, edge in enumerate(graph.edges):
        waypoints = [
            _Box(f"{index}/{column}", None, height=_WAYPOINT_HEIGHT)
            for column in range(layer[edge.source] + 1, layer[edge.target])
        ]
        for waypoint, column_index in zip(
            waypoints, range(layer[edge.source] + 1, layer[edge.target]), strict=True
        ):
            columns[column_index].append(waypoint)
        routes.append((edge, waypoints))
        chain = [edge.source, *(waypoint.key for waypoint in waypoints), edge.target]
        if layer[edge.target] > layer[edge.source]:
            for before, after in pairwise(chain):
                neighbours[before].append(after)
                neighbours[after].append(before)

    _order_columns(columns, neighbours)

    for column_index, column in enumerate(columns):
        for box in column:
            box.layer = column_index
    slots = [chunk for column in columns for chunk in _split(column)]
    heights = [sum(box.height for box in slot) + _ROW_GAP * (len(slot) - 1) for slot in slots]
    widths = [max((box.width for box in slot), default=0.0) or _WAYPOINT_WIDTH for slot in slots]
    # Columns wrap into bands, one under the other, as words into lines.
    bands: list[list[int]] = [[]]
    x = float(_MARGIN)
    for index, slot_width in enumerate(widths):
        if bands[-1] and x + slot_width + _MARGIN > _MAX_WIDTH:
            bands.append([])
            x = float(_MARGIN)
        bands[-1].append(index)
        x += slot_width + _LAYER_GAP
    width = 2.0 * _MARGIN
    top = float(_MARGIN)
    for band in bands:
        band_height = max((heights[index] for index in band), default=0.0)
        x = float(_MARGIN)
        for index in band:
            slot, slot_width = slots[index], widths[index]
            y = top + (band_height - heights[index]) / 2
            for box in slot:
                if box.node is None:
                    box.width = slot_width
                box.x = x + (slot_width - box.width) / 2
                box.y = y
                y += box.height + _ROW_GAP
            x += slot_width + _LAYER_GAP
        width = max(width, x - _LAYER_GAP + _MARGIN)
        top += band_height + _BAND_GAP
    height = top - _BAND_GAP + _MARGIN if slots else 2.0 * _MARGIN
    return _Drawing(boxes, routes, width, height)


def _split(column: list[_Box]) -> list[list[_Box]]:
    """A column too tall to read, cut into columns of about equal height side by side."""
    if len(column) <= _MAX_ROWS:
        return [column]
    count = -(-len(column) // _MAX_ROWS)
    size = -(-len(column) // count)
    return [column[start : start + size] for start in range(0, len(column), size)]


def _order_columns(columns: list[list[_Box]], neighbours: dict[str, list[str]]) -> None:
    """Order each column by the mean row of its neighbours in the columns beside it.

    A few sweeps, left to right then right to left, keep edges short and
    crossings few; ties keep the previous order, so the result is deterministic.
    """
    row: dict[str, float] = {}
    for column in columns:
        for index, box in enumerate(column):
            row[box.key] = index
    for sweep in range(4):
        order = columns[1:] if sweep % 2 == 0 else columns[-2::-1]
        for column in order:
            keys = {box.key for box in column}
            previous = {box.key: index for index, box in enumerate(column)}

            def rank(
                box: _Box, keys: set[str] = keys, previous: dict[str, int] = previous
            ) -> tuple[float, int]:
                placed = [row[key] for key in neighbours[box.key] if key not in keys]
                mean = sum(placed) / len(placed) if placed else previous[box.key]
                return (mean, previous[box.key])

            column.sort(key=rank)
            for index, box in enumerate(column):
                row[box.key] = index


def _edge_path(source: _Box, target: _Box, waypoints: list[_Box]) -> str:
    if target.layer <= source.layer:
        # An edge that goes back (a cycle through ``unless``): loop under both nodes.
        x1, y1 = source.cx, source.y + source.height
        x2, y2 = target.cx, target.y + target.height
        dip = max(y1, y2) + 36
        return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{dip:.1f} {x2:.1f},{dip:.1f} {x2:.1f},{y2:.1f}"
    # Through each waypoint straight across its column, with S-curves between columns.
    points = [(source.x + source.width, source.cy)]
    for waypoint in waypoints:
        points += [(waypoint.x, waypoint.cy), (waypoint.x + waypoint.width, waypoint.cy)]
    points.append((target.x, target.cy))
    path = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for index in range(1, len(points)):
        (x1, y1), (x2, y2) = points[index - 1], points[index]
        if index % 2 == 0:
            path.append(f"L{x2:.1f},{y2:.1f}")
        elif x2 < x1:
            # On to the next band (or column of the same layer): swing round.
            path.append(f"C{x1 + 40:.1f},{y1:.1f} {x2 - 40:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")
        else:
            bend = (x2 - x1) / 2
            path.append(f"C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")
    return " ".join(path)


def _svg_node(box: _Box) -> list[str]:
    node = box.node
    assert node is not None
    title = f"{node.kind} {printable(node.label)}: {_status_text(node)}"
    parts = [f'<g class="node {node.kind}" data-status="{_attr(node.status or "")}">']
    parts.append(f"<title>{_attr(title)}</title>")
    if node.kind == TRIGGER:
        style = _TRIGGER_FIRED if node.status == FIRED else _TRIGGER_WAITING
        parts.append(
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
            f'height="{box.height:.1f}" rx="{box.height / 2:.1f}" fill="{style.fill}" '
            f'stroke="{style.stroke}" stroke-width="1.5"/>'
        )
        parts.append(
            f'<text x="{box.cx:.1f}" y="{box.cy + 4:.1f}" text-anchor="middle" '
            f'fill="{style.text}">{_attr(box.text)}</text>'
        )
    else:
        style = _STATUS_STYLES[node.status]
        dash = ' stroke-dasharray="4 3"' if node.status is None else ""
        width = 2 if node.status == TaskInstance.FAILED else 1.5
        parts.append(
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
            f'height="{box.height:.1f}" rx="4" fill="{style.fill}" stroke="{style.stroke}" '
            f'stroke-width="{width}"{dash}/>'
        )
        parts.append(
            f'<text x="{box.cx:.1f}" y="{box.y + 17:.1f}" text-anchor="middle" '
            f'font-weight="600" fill="{style.text}">{_attr(box.text)}</text>'
        )
        parts.append(
            f'<text x="{box.cx:.1f}" y="{box.y + 32:.1f}" text-anchor="middle" '
            f'font-size="{_SMALL_FONT_SIZE}" fill="{style.text}">{_attr(_status_text(node))}</text>'
        )
    parts.append("</g>")
    return parts


def _svg_legend(top: float, width: float) -> tuple[list[str], float]:
    """The legend's elements, wrapped to ``width``, and its height."""
    items: list[tuple[float, Iterable[str]]] = []

    def item(label: str, sample: str, sample_width: float) -> None:
        item_width = sample_width + 6 + _text_width(label, _SMALL_FONT_SIZE) + 18
        items.append((item_width, (sample, label)))

    for kind in EDGE_KINDS:
        colour, stroke_width, dash, label = _EDGE_STYLES[kind]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        item(
            label,
            f'<line x1="{{x}}" y1="{{cy}}" x2="{{x28}}" y2="{{cy}}" stroke="{colour}" '
            f'stroke-width="{stroke_width}"{dash_attr} marker-end="url(#dt-arrow-{kind})"/>',
            30,
        )
    for label, style in (
        ("trigger fired", _TRIGGER_FIRED),
        ("trigger not fired", _TRIGGER_WAITING),
    ):
        item(
            label,
            f'<rect x="{{x}}" y="{{top}}" width="24" height="12" rx="6" fill="{style.fill}" '
            f'stroke="{style.stroke}"/>',
            24,
        )
    for status, style in _STATUS_STYLES.items():
        dash = ' stroke-dasharray="3 2"' if status is None else ""
        item(
            f"task {status or 'without instance'}",
            f'<rect x="{{x}}" y="{{top}}" width="16" height="12" rx="2" fill="{style.fill}" '
            f'stroke="{style.stroke}"{dash}/>',
            16,
        )

    parts = ['<g class="legend" font-size="10">']
    line_height = 18
    x, y = float(_MARGIN), top
    for item_width, (sample, label) in items:
        if x + item_width > width - _MARGIN and x > _MARGIN:
            x, y = float(_MARGIN), y + line_height
        sample_width = item_width - 24 - _text_width(label, _SMALL_FONT_SIZE)
        parts.append(
            sample.format(x=f"{x:.1f}", x28=f"{x + 26:.1f}", cy=f"{y + 6:.1f}", top=f"{y:.1f}")
        )
        parts.append(
            f'<text x="{x + sample_width + 6:.1f}" y="{y + 10:.1f}" fill="#374151">'
            f"{_attr(label)}</text>"
        )
        x += item_width
    parts.append("</g>")
    return parts, y + line_height - top


def to_svg(graph: Graph) -> str:
    """A self-contained SVG drawing of the graph, laid out in columns from left to right.

    Tasks are boxes coloured by the status of their latest instance; triggers
    are pills, filled once fired. A task's own trigger is part of its box: the
    edges it leads to leave the task (see :func:`merge_cascades`). Columns
    taller than :data:`_MAX_ROWS` boxes are cut side by side, and columns
    wrap into bands under each other past :data:`_MAX_WIDTH` pixels. Every
    name is escaped, so the result can be embedded in an HTML page as it is.
    """
    graph = merge_cascades(graph)
    drawing = _layout(graph)
    boxes = drawing.boxes
    labels = {node.id: node.label for node in graph.nodes}
    width = max(drawing.width, 560.0)
    height = drawing.height if boxes else 2 * _MARGIN + 20.0
    legend, legend_height = _svg_legend(height + 4, width)
    total_height = height + 4 + legend_height + _MARGIN / 2

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="triggers-graph" '
        f'width="{width:.0f}" height="{total_height:.0f}" '
        f'viewBox="0 0 {width:.0f} {total_height:.0f}" role="img" '
        f'font-family="{_attr(_FONT)}" font-size="{_FONT_SIZE}">',
        "<title>Workflow of the session</title>",
        "<defs>",
    ]
    for kind in EDGE_KINDS:
        colour = _EDGE_STYLES[kind][0]
        parts.append(
            f'<marker id="dt-arrow-{kind}" viewBox="0 0 10 10" refX="9" refY="5" '
            f'markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" '
            f'orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    parts.append("</defs>")
    parts.append('<rect width="100%" height="100%" fill="#ffffff"/>')
    if not boxes:
        parts.append(
            f'<text x="{_MARGIN}" y="{_MARGIN + 14}" fill="#4b5563">'
            "No task is configured and no trigger has fired yet.</text>"
        )
    parts.append('<g class="edges" fill="none">')
    for edge, waypoints in drawing.routes:
        # Leaving a task, an ``after`` edge is its cascade: the task finishes, the next runs.
        kind = CASCADE if edge.kind == AFTER and edge.source.startswith(f"{TASK}:") else edge.kind
        colour, stroke_width, dash, _ = _EDGE_STYLES[kind]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        source, target = boxes[edge.source], boxes[edge.target]
        ends = f"{printable(labels[edge.source])} \u2192 {printable(labels[edge.target])}"
        title = f"{ends}: {kind}"
        parts.append(
            f'<path class="edge {kind}" d="{_edge_path(source, target, waypoints)}" '
            f'stroke="{colour}" '
            f'stroke-width="{stroke_width}"{dash_attr} marker-end="url(#dt-arrow-{kind})">'
            f"<title>{_attr(title)}</title></path>"
        )
    parts.append("</g>")
    parts.append('<g class="nodes">')
    for node in graph.nodes:
        parts.extend(_svg_node(boxes[node.id]))
    parts.append("</g>")
    parts.extend(legend)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
