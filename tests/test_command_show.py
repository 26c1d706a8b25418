"""The ``triggers_show`` management command."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_triggers.models import FiredTrigger, TaskInstance, TriggerSession
from tests.test_commands import ECHO, database_rows, run_command

FAIL = "tests.Fail"


@pytest.fixture
def session(trigger_manager, triggers):
    """``t_echo#0`` finished, ``t_fail#0`` failed, ``t_wait#0`` waiting for ``b``
    (and abandoned once ``c`` and ``d`` have fired; ``c`` has)."""
    trigger_manager.update_configuration(
        {
            "t_echo": {"after": ["a"], "run": ECHO},
            "t_fail": {"after": ["a"], "run": FAIL},
            "t_wait": {"after": ["a", "b"], "unless": ["c", "d"], "run": ECHO},
        }
    )
    trigger_manager.fire("a", {"x": 1})
    triggers.assertInstanceFinished("t_echo#0")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    trigger_manager.fire("c")
    return trigger_manager


def show(manager, *args):
    stdout, _ = run_command("triggers_show", manager.session_uid, *args)
    return stdout


def test_show_prints_each_task_with_its_directives(session):
    stdout = show(session)

    assert "  t_wait\n" in stdout
    assert '    after: ["a", "b"]\n' in stdout
    assert '    unless: ["c", "d"]\n' in stdout
    assert f'    run: "{ECHO}"\n' in stdout


def test_show_lists_the_fired_triggers_in_order_with_their_source_and_kwargs(session):
    lines = show(session).splitlines()

    fired = [line for line in lines if line.startswith("  ") and ". 20" in line]
    assert [line.split()[2:4] for line in fired] == [
        ["a", "(application)"],
        ["t_echo", "(cascade)"],
        ["c", "(application)"],
    ]
    assert fired[0].endswith('{"x": 1}')


def test_show_lists_every_instance_with_its_status(session):
    stdout = show(session)

    assert "  t_echo#0  finished\n" in stdout
    assert "  t_fail#0  failed\n" in stdout
    assert "  t_wait#0  unstarted\n" in stdout


def test_show_says_what_an_unstarted_instance_waits_for(session):
    stdout = show(session)

    assert "  t_wait#0 waits for: b (has a); abandoned once d fires (already fired: c)\n" in stdout


def test_show_lists_failures_with_their_exception_type_message_and_context(session):
    stdout = show(session)

    failures = stdout[stdout.index("Failures (1)") :]
    assert "  t_fail#0: builtins.ValueError: the data is wrong\n" in failures
    assert '    context: {"field": "birthday", "row": 7}\n' in failures


def test_show_marks_a_replay_with_the_instance_it_replays(session, triggers):
    session.replay_failed_instance("t_fail#0")
    triggers.assertInstanceFailed("t_fail#1", ValueError)

    stdout = show(session)

    assert "  t_fail#0  replayed\n" in stdout
    assert "  t_fail#1  failed  (replays t_fail#0, retry 1)\n" in stdout


def test_show_says_none_for_the_sections_of_an_empty_session(trigger_manager):
    stdout = show(trigger_manager)

    for section in ("Configuration", "Fired triggers", "Instances", "Waiting", "Failures"):
        assert f"{section} (0)\n  none\n" in stdout


def test_show_shortens_long_kwargs_but_json_shows_them_in_full(trigger_manager):
    long_text = "x" * 500
    trigger_manager.fire("a", {"text": long_text})

    plain = show(trigger_manager)
    data = json.loads(show(trigger_manager, "--json"))

    assert long_text not in plain
    assert '{"text": "xxx' in plain
    assert "...\n" in plain
    assert data["fired_triggers"][0]["kwargs"] == {"text": long_text}


def test_show_json_is_the_debug_repr_with_what_unstarted_instances_wait_for(session):
    data = json.loads(show(session, "--json"))

    expected = session.debug_repr()
    expected["waiting"] = {
        "t_wait#0": {
            "after_fired": ["a"],
            "after_missing": ["b"],
            "unless_fired": ["c"],
            "unless_missing": ["d"],
        }
    }
    assert data == expected


def test_show_changes_nothing(session):
    before = database_rows()

    show(session)
    show(session, "--json")

    assert database_rows() == before


def test_show_reads_a_session_whose_manager_class_cannot_be_imported(session):
    TriggerSession.objects.filter(uid=session.session_uid).update(manager_class="nowhere.Missing")

    stdout = show(session)

    assert "  manager: nowhere.Missing\n" in stdout
    assert "  t_fail#0  failed\n" in stdout


def test_show_spells_out_control_characters_of_uids_names_and_messages(session):
    uid = f"{session.session_uid}\x1b[2J"
    TriggerSession.objects.filter(uid=session.session_uid).update(
        uid=uid, manager_class="app\x1b[31m.Manager"
    )
    FiredTrigger.objects.filter(trigger_name="c").update(trigger_name="c\x1b[8m")
    TaskInstance.objects.filter(name="t_fail#0").update(
        name="t_fail\x07#0",
        metadata={
            "exception_type": "builtins.ValueError",
            "exception_message": "wrong\x1b]0;owned\x07",
        },
    )

    stdout, _ = run_command("triggers_show", uid)

    assert not {"\x1b", "\x07"} & set(stdout)
    assert f"Session {session.session_uid}\\x1b[2J\n" in stdout
    assert "  manager: app\\x1b[31m.Manager\n" in stdout
    assert "  c\\x1b[8m  (application)  {}\n" in stdout
    assert "  t_echo#0      finished\n" in stdout
    assert "  t_fail\\x07#0  failed\n" in stdout
    assert "  t_fail\\x07#0: builtins.ValueError: wrong\\x1b]0;owned\\x07\n" in stdout


# -- a big session --------------------------------------------------------------------


@pytest.fixture
def big(db):
    """200 tasks, 600 instances (30 failed, 20 in flight, 60 waiting), 300 fires."""
    from bench.big_session import build_big_session

    return build_big_session("big", tasks=200, instances=600, fires=300, waiting=60, not_started=40)


def suffix(name):
    """The index of a task of the big session (``task_name(index)``), which is also the
    order its instances were created and changed status in."""
    return int(name.partition("#")[0][-4:])


def summary_list(stdout, heading):
    """The names listed under ``heading`` in a summary."""
    lines = stdout[stdout.index(f"{heading} (") :].splitlines()[1:]
    listed = []
    for line in lines:
        if not line.startswith("  ") or line.startswith("  ..."):
            break
        listed.append(line.split()[0].rstrip(":"))
    return listed


def test_show_sums_up_a_big_session(big):
    stdout, _ = run_command("triggers_show", "big")

    lines = stdout.splitlines()
    assert len(lines) < 120
    assert "  tasks: 200 configured, 40 without an instance yet" in lines
    assert any(line.startswith("  instances: 600 (") and "failed 30" in line for line in lines), (
        lines[:8]
    )
    assert "Failures (30)" in lines
    assert "  ... and 15 more (--section failures)" in lines
    assert "Waiting (60)" in lines
    assert "In flight (20)" in lines
    assert "Tasks without an instance yet (40)" in lines
    assert "Latest fires (300)" in lines
    assert "  300. " in stdout
    assert "--section {configuration,fires,instances,waiting,failures}" in stdout
    assert "Instances (600)" not in lines


def test_show_prints_one_section_of_a_big_session_in_full(big):
    failures, _ = run_command("triggers_show", "big", "--section", "failures")
    instances, _ = run_command("triggers_show", "big", "--instances")
    both, _ = run_command("triggers_show", "big", "--fires", "--section", "waiting")

    assert failures.count(": pipeline.errors.StepError: ") == 30
    assert "Summary" not in failures
    assert "Configuration" not in failures
    assert len([line for line in instances.splitlines() if line.startswith("  ")]) == 600 + 2
    assert "Fired triggers (300)" in both
    assert "Waiting (60)" in both
    assert both.count(" waits for: ") == 60


def test_show_full_and_json_keep_everything_of_a_big_session(big):
    full, _ = run_command("triggers_show", "big", "--full")
    data = json.loads(run_command("triggers_show", "big", "--json")[0])

    assert "Configuration (200)" in full
    assert "Instances (600)" in full
    assert len(data["instances"]) == 600
    assert len(data["fired_triggers"]) == 300


def test_show_lists_tasks_in_workflow_order(big):
    from bench.big_session import task_name

    configuration, _ = run_command("triggers_show", "big", "--configuration")

    tasks = [
        line.strip()
        for line in configuration.splitlines()
        if line.startswith("  ") and not line.startswith("    ")
    ]
    tasks = tasks[2:]  # manager, created
    position = {name: index for index, name in enumerate(tasks)}
    # Each task comes after the task, twenty before, whose trigger it waits for.
    for index in range(20, 200, 7):
        assert position[task_name(index)] > position[task_name(index - 20)]
    assert tasks != sorted(tasks)
    assert tasks[:20] == [task_name(index) for index in range(20)]


def test_the_summary_takes_as_many_queries_for_a_few_instances_as_for_hundreds(big):
    from bench.big_session import build_big_session

    build_big_session(
        "few", tasks=45, instances=5, fires=10, failed=1, in_flight=1, waiting=1, not_started=40
    )

    with CaptureQueriesContext(connection) as few_queries:
        few, _ = run_command("triggers_show", "few")
    with CaptureQueriesContext(connection) as big_queries:
        many, _ = run_command("triggers_show", "big")

    assert "  instances: 5 (" in few
    assert "  instances: 600 (" in many
    assert len(few_queries.captured_queries) == len(big_queries.captured_queries)


def test_a_session_big_in_fires_alone_is_summed_up_with_what_failed_and_what_waits(session):
    for page in range(41):
        session.fire("page", {"page": page})

    stdout = show(session)

    assert "Summary" in stdout
    assert "  tasks: 3 configured, 0 without an instance yet\n" in stdout
    assert "  instances: 3 (unstarted 1, finished 1, failed 1)\n" in stdout
    assert "  t_fail#0: builtins.ValueError: the data is wrong\n" in stdout
    assert '    context: {"field": "birthday", "row": 7}\n' in stdout
    assert "  t_wait#0 waits for: b (has a); abandoned once d fires (already fired: c)\n" in stdout
    assert "Latest fires (44)\n" in stdout
    [last] = [line for line in stdout.splitlines() if line.startswith("  44. ")]
    assert last.endswith('  page  (application)  {"page": 40}')
    assert "  ... and 39 more (--section fires)\n" in stdout


def test_the_summary_lists_the_failures_that_happened_first(big):
    stdout, _ = run_command("triggers_show", "big")

    assert summary_list(stdout, "Failures") == [
        f"{name}#0" for name in sorted(big.failed, key=suffix)[:15]
    ]


def test_the_summary_lists_the_instances_waiting_the_longest_first(big):
    waiting = TaskInstance.objects.filter(status=TaskInstance.UNSTARTED).values_list(
        "name", flat=True
    )

    stdout, _ = run_command("triggers_show", "big")

    assert summary_list(stdout, "Waiting") == sorted(waiting, key=suffix)[:15]


def test_the_summary_lists_tasks_without_an_instance_in_the_order_configured(big):
    from bench.big_session import task_name

    stdout, _ = run_command("triggers_show", "big")

    assert summary_list(stdout, "Tasks without an instance yet") == [
        task_name(index) for index in range(160, 175)
    ]
