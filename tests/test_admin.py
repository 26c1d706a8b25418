"""The operators' admin: what each page shows, what each action changes, who may do what."""

import json
import logging
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from django_triggers import admin as triggers_admin
from django_triggers.encoding import describe_exception
from django_triggers.exceptions import with_context
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance, TriggerSession
from django_triggers.runners import BaseTaskRunner
from tests.helpers import set_status

ECHO = "tests.Echo"
CHANGELIST = "admin:django_triggers_taskinstance_changelist"
SESSIONS = "admin:django_triggers_triggersession_changelist"


class IdleRunner(BaseTaskRunner):
    """Accepts instances and leaves them scheduled, so tests control every status."""

    name = "test_admin.idle"

    def run(self, manager, task_instance):
        pass


class HookedManager(TriggerManager):
    """A manager subclass an application might use; it notes the replays it is told about."""

    replayed: list[str] = []

    def _post_replay(self, new_instance):
        self.replayed.append(new_instance.name)


def task(after, run=ECHO, **directives):
    return {"after": after, "run": run, "using": IdleRunner.name, **directives}


def fail(manager, name, message="the data is <wrong>"):
    """Fail a scheduled instance as a task raising an exception with context would."""
    try:
        raise with_context(ValueError(message), {"row": 7, "field": "birthday"})
    except ValueError as exc:
        metadata = describe_exception(exc)
    before = manager.get_instance(name).metadata
    timestamps = {**before.get("timestamps", {}), "failed": timezone.now().isoformat()}
    set_status(manager, name, "failed", metadata={**before, **metadata, "timestamps": timestamps})
    return manager.get_instance(name)


def set_log_level(instance, level=logging.ERROR):
    """Test set-up: record a log level as a task's logger would."""
    TaskInstance.objects.filter(pk=instance.pk).update(log_level=level)


@pytest.fixture(name="manager")
def manager_fixture(db):
    manager = TriggerManager("session-1")
    manager.update_configuration({"t_a": task(["a"]), "t_b": task(["t_a"])})
    return manager


@pytest.fixture(name="failed")
def failed_fixture(manager):
    manager.fire("a", {"value": 1})
    return fail(manager, "t_a#0")


def make_user(username, *codenames):
    user = User.objects.create_user(username, password="x", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_triggers", codename=codename)
        )
    return user


@pytest.fixture
def viewer_client(db, client):
    client.force_login(
        make_user("viewer", "view_triggersession", "view_taskinstance", "view_firedtrigger")
    )
    return client


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def instance_url(instance, view="change"):
    return reverse(f"admin:django_triggers_taskinstance_{view}", args=[instance.pk])


def session_url(session, view="change"):
    return reverse(f"admin:django_triggers_triggersession_{view}", args=[session.pk])


def post_action(client, action, instances, url=CHANGELIST, **data):
    """Post a changelist action as its form does; ``apply`` submits its intermediate page."""
    payload = {"action": action, "_selected_action": [obj.pk for obj in instances], **data}
    if "apply" not in data:
        payload["index"] = 0
    return client.post(reverse(url), payload)


def status_of(manager, name):
    return manager.get_instance(name).status


def embedded_svg(html):
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="triggers-graph"')
    return html[start : html.index("</svg>", start) + len("</svg>")]


# -- sessions list ------------------------------------------------------------------


def test_session_list_shows_counts_by_status_last_fire_and_unresolved(
    admin_client, failed, manager
):
    manager.fire("z")  # a trigger no task waits for: only a fire
    set_log_level(failed)

    response = admin_client.get(reverse(SESSIONS))

    [session] = response.context["cl"].result_list
    assert session.count_failed == 1
    assert session.count_finished == 0
    assert session.unresolved_count == 1
    assert session.has_unresolved_logs is True
    assert session.last_fire_at == FiredTrigger.objects.latest("id").fired_at
    assert '<span class="dt-badge dt-status-failed">1 failed</span>' in response.content.decode()


def test_session_list_query_count_does_not_grow_with_sessions(admin_client, db):
    def make_session(uid):
        manager = TriggerManager(uid)
        manager.update_configuration({"t_a": task(["a"])})
        manager.fire("a")

    make_session("s-0")
    with CaptureQueriesContext(connection) as one:
        admin_client.get(reverse(SESSIONS))
    for number in range(1, 6):
        make_session(f"s-{number}")
    with CaptureQueriesContext(connection) as six:
        response = admin_client.get(reverse(SESSIONS))

    assert len(response.context["cl"].result_list) == 6
    assert len(six.captured_queries) == len(one.captured_queries)


def test_session_list_filters_by_status_of_contained_instances(admin_client, failed):
    TriggerManager("session-without-failure").fire("a")

    response = admin_client.get(reverse(SESSIONS), {"instance_status": "failed"})

    assert [s.uid for s in response.context["cl"].result_list] == ["session-1"]


def test_session_list_filters_sessions_with_unresolved_logs(admin_client, failed, manager):
    other = TriggerManager("session-2")
    other.update_configuration({"t_a": task(["a"])})
    other.fire("a")
    set_log_level(failed)

    response = admin_client.get(reverse(SESSIONS), {"attention": "logs"})

    assert [s.uid for s in response.context["cl"].result_list] == ["session-1"]


def test_session_list_filters_by_creation_date(admin_client, db):
    TriggerManager("old").session  # noqa: B018  (created)
    TriggerManager("new").session  # noqa: B018  (created)
    TriggerSession.objects.filter(uid="old").update(created=timezone.now() - timedelta(days=40))
    now = timezone.now()

    response = admin_client.get(
        reverse(SESSIONS),
        {
            "created__gte": (now - timedelta(days=7)).isoformat(),
            "created__lt": (now + timedelta(days=1)).isoformat(),
        },
    )

    assert [s.uid for s in response.context["cl"].result_list] == ["new"]


def test_session_list_searches_by_uid(admin_client, db):
    TriggerManager("order-17").session  # noqa: B018  (created)
    TriggerManager("questionnaire-3").session  # noqa: B018  (created)

    response = admin_client.get(reverse(SESSIONS), {"q": "order"})

    assert [s.uid for s in response.context["cl"].result_list] == ["order-17"]


# -- the session page -----------------------------------------------------------------


def test_session_page_shows_the_configuration_as_written(admin_client, db):
    manager = TriggerManager("configured")
    configuration = {
        "t_pages": task(
            ["start"],
            andEvery="page",
            unless=["cancel"],
            withParams={"page": {"source": "web"}},
            within=600,
            priority="high",
        )
    }
    manager.update_configuration(configuration)

    response = admin_client.get(session_url(manager.session))

    assert response.context["configuration_json"] == json.dumps(
        manager.get_configuration(), indent=2
    )
    [shown] = response.context["configuration"]
    rows = {row["key"]: row for row in shown["directives"]}
    assert rows["after"]["names"] == ["start"]
    assert rows["andEvery"]["text"] == "page"
    assert rows["unless"]["names"] == ["cancel"]
    assert json.loads(rows["withParams"]["json"]) == {"page": {"source": "web"}}
    assert rows["within"]["text"] == "600"
    assert rows["priority"]["text"] == "high"
    assert "<dt>andEvery</dt>" in response.content.decode()


def test_session_page_lists_fires_in_order_with_kwargs_and_source(admin_client, manager):
    manager.fire("a", {"value": 1})
    manager.fire("z", {"note": "<b>bold</b>"}, source=FiredTrigger.ADMIN)

    response = admin_client.get(session_url(manager.session))

    timeline = response.context["timeline"]
    assert [item["fired"].trigger_name for item in timeline] == ["a", "z"]
    assert json.loads(timeline[1]["kwargs"]) == {"note": "<b>bold</b>"}
    assert timeline[0]["scheduled"][0][0] == "t_a#0"
    html = response.content.decode()
    assert "&quot;note&quot;: &quot;&lt;b&gt;bold&lt;/b&gt;&quot;" in html
    assert "<td>admin</td>" in html


def test_session_page_says_what_each_unstarted_instance_waits_for(admin_client, db):
    manager = TriggerManager("waiting")
    manager.update_configuration({"t_pair": task(["a", "b"], unless=["x", "y"])})
    manager.fire("a")
    manager.fire("x")

    response = admin_client.get(session_url(manager.session))

    [row] = response.context["attention"]["waiting"].rows
    assert row["instance"].name == "t_pair#0"
    assert row["waiting"] == {
        "after_fired": ["a"],
        "after_missing": ["b"],
        "unless_fired": ["x"],
        "unless_missing": ["y"],
    }
    assert '<code class="dt-trigger dt-missing">b</code>' in response.content.decode()


def test_session_page_lists_tasks_without_an_instance_and_their_missing_triggers(
    admin_client, manager
):
    response = admin_client.get(session_url(manager.session))

    assert response.context["attention"]["not_started"].rows == [
        {"name": "t_a", "after_missing": ["a"], "after_fired": []},
        {"name": "t_b", "after_missing": ["t_a"], "after_fired": []},
    ]


def test_session_page_shows_failures_with_their_error_and_links_to_fix_them(
    admin_client, failed, manager
):
    response = admin_client.get(session_url(manager.session))

    [row] = response.context["attention"]["failed"].rows
    assert row["error"] == "builtins.ValueError: the data is <wrong>"
    assert row["replay_url"] == instance_url(failed, "replay")
    assert row["skip_url"] == instance_url(failed, "skip")
    html = response.content.decode()
    assert "builtins.ValueError: the data is &lt;wrong&gt;" in html
    assert f'href="{instance_url(failed, "replay")}"' in html


def test_session_page_embeds_the_diagram_with_user_names_escaped(admin_client, db):
    manager = TriggerManager("hostile")
    manager.update_configuration({"t_a": task(["<script>alert(1)</script>"])})

    html = admin_client.get(session_url(manager.session)).content.decode()

    assert "<script>alert(1)</script>" not in html
    svg = ET.fromstring(embedded_svg(html))
    texts = ["".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "<script>alert(1)</script>" in texts
    assert "t_a" in texts


def test_session_page_renders_every_section_for_a_busy_session(admin_client, failed, manager):
    manager.update_configuration({"t_c": task(["c", "d"], andEvery="page", unless=["stop"])})
    manager.fire("c", {"when": "now"})
    manager.fire("page", {"n": 1})
    set_log_level(failed)

    response = admin_client.get(session_url(manager.session))

    assert response.status_code == 200
    assert response.templates[0].name == "admin/django_triggers/triggersession/change_form.html"
    html = response.content.decode()
    for section in ("attention", "workflow", "instances", "configuration", "timeline"):
        assert f'id="{section}"' in html
    assert "django_triggers/admin.css" in html
    assert "Unresolved error logs" in html
    assert html.count("<table") == html.count("</table>")
    assert html.count("<div") == html.count("</div>")


def test_session_page_has_no_save_buttons(admin_client, manager):
    html = admin_client.get(session_url(manager.session)).content.decode()

    assert 'name="_save"' not in html
    assert 'name="_continue"' not in html


# -- the attention panel of a busy session ----------------------------------------------


@pytest.fixture
def busy(db):
    """A session whose tasks each get a new instance on every fire of their trigger."""
    manager = TriggerManager("busy")
    manager.update_configuration(
        {
            "t_a_scheduled": task([], andEvery="s"),
            "t_m_waiting": task(["x"], andEvery="w"),
            "t_z_failed": task([], andEvery="f"),
        }
    )
    return manager


def add_instances(manager, count):
    """``count`` more instances of each kind: scheduled, waiting, and failed with error logs."""
    for _ in range(count):
        manager.fire("s")
        manager.fire("w")
        [scheduled] = manager.fire("f")
        set_log_level(fail(manager, scheduled.name))


def listed_names(attention_list):
    return [row["instance"].name for row in attention_list.rows]


def test_session_page_lists_failed_instances_beyond_the_instance_table(
    admin_client, busy, monkeypatch
):
    monkeypatch.setattr(triggers_admin, "INSTANCES_LIMIT", 2)
    add_instances(busy, 2)

    response = admin_client.get(session_url(busy.session))

    assert len(response.context["instance_rows"]) == 2
    failed = response.context["attention"]["failed"]
    assert listed_names(failed) == ["t_z_failed#0", "t_z_failed#1"]
    assert failed.total == 2
    last_failed = busy.get_instance("t_z_failed#1")
    assert f'<a href="{instance_url(last_failed)}">t_z_failed#1</a>' in response.content.decode()


def test_session_page_counts_the_failed_instances_it_does_not_list_and_links_to_them(
    admin_client, busy, monkeypatch
):
    monkeypatch.setattr(triggers_admin, "ATTENTION_LIMIT", 2)
    add_instances(busy, 3)

    response = admin_client.get(session_url(busy.session))

    failed = response.context["attention"]["failed"]
    assert (listed_names(failed), failed.total, failed.hidden) == (
        ["t_z_failed#0", "t_z_failed#1"],
        3,
        1,
    )
    html = response.content.decode()
    assert "Failed (3)" in html
    assert "1 more is not listed here." in html
    assert f'<a href="{failed.url.replace("&", "&amp;")}">See all 3</a>' in html


def test_each_attention_link_lists_every_instance_of_its_kind_in_the_session(
    admin_client, busy, monkeypatch
):
    monkeypatch.setattr(triggers_admin, "ATTENTION_LIMIT", 1)
    add_instances(busy, 2)
    other = TriggerManager("other")
    other.update_configuration({"t_z_failed": task([], andEvery="f")})
    fail(other, other.fire("f")[0].name)

    attention = admin_client.get(session_url(busy.session)).context["attention"]

    expected = {
        "failed": ["t_z_failed#0", "t_z_failed#1"],
        "waiting": ["t_m_waiting#0", "t_m_waiting#1"],
        "in_flight": ["t_a_scheduled#0", "t_a_scheduled#1"],
        "unresolved_logs": ["t_z_failed#0", "t_z_failed#1"],
    }
    for kind, names in expected.items():
        assert attention[kind].total == len(names)
        changelist = admin_client.get(attention[kind].url)
        assert changelist.status_code == 200
        shown = changelist.context["cl"].result_list
        assert sorted((i.session.uid, i.name) for i in shown) == [("busy", n) for n in names]


def test_session_page_query_count_does_not_grow_with_instances_needing_attention(
    admin_client, busy
):
    add_instances(busy, 1)
    admin_client.get(session_url(busy.session))
    with CaptureQueriesContext(connection) as few:
        admin_client.get(session_url(busy.session))
    add_instances(busy, 5)

    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(session_url(busy.session))

    assert response.context["attention"]["waiting"].total == 6
    assert len(many.captured_queries) == len(few.captured_queries)


# -- diagram downloads --------------------------------------------------------------


def test_the_mermaid_download_is_the_session_flowchart_as_text(admin_client, manager):
    response = admin_client.get(session_url(manager.session, "mermaid"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    text = response.content.decode()
    assert text.startswith("flowchart LR\n")
    assert '(["a"])' in text


def test_the_dot_download_is_the_session_digraph_as_text(admin_client, manager):
    response = admin_client.get(session_url(manager.session, "dot"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    text = response.content.decode()
    assert text.startswith("digraph triggers {")
    assert '"trigger:a" -> "task:t_a"' in text


def test_downloads_need_the_view_permission(client, manager):
    client.force_login(make_user("nobody"))

    assert client.get(session_url(manager.session, "mermaid")).status_code == 403
    assert client.get(session_url(manager.session, "dot")).status_code == 403


def test_downloads_of_an_unknown_session_redirect_with_a_message(admin_client, db):
    response = admin_client.get(
        reverse("admin:django_triggers_triggersession_dot", args=[999]), follow=True
    )

    assert messages_of(response) == [
        "Trigger session with ID '999' doesn't exist. Perhaps it was deleted?"
    ]


# -- instances list and page ----------------------------------------------------------


def test_instance_list_filters_by_status_and_unresolved_logs(admin_client, failed, manager):
    manager.fire("other")
    manager.update_configuration({"t_c": task(["c"])})
    manager.fire("c")
    set_log_level(failed)

    by_status = admin_client.get(reverse(CHANGELIST), {"status__exact": "scheduled"})
    by_logs = admin_client.get(reverse(CHANGELIST), {"logs": "unresolved"})

    assert [i.name for i in by_status.context["cl"].result_list] == ["t_c#0"]
    assert [i.name for i in by_logs.context["cl"].result_list] == ["t_a#0"]


def test_instance_list_searches_by_session_uid(admin_client, failed):
    other = TriggerManager("elsewhere")
    other.update_configuration({"t_x": task(["x"])})
    other.fire("x")

    response = admin_client.get(reverse(CHANGELIST), {"q": "elsewhere"})

    assert [i.name for i in response.context["cl"].result_list] == ["t_x#0"]


def test_instance_list_finds_an_instance_by_its_whole_celery_task_id(admin_client, failed):
    other = TriggerManager("elsewhere")
    other.update_configuration({"t_x": task(["x"])})
    other.fire("x")

    response = admin_client.get(reverse(CHANGELIST), {"q": failed.celery_task_id})

    assert [i.name for i in response.context["cl"].result_list] == [failed.name]


def test_instance_page_shows_kwargs_traceback_context_and_timestamps(admin_client, failed):
    html = admin_client.get(instance_url(failed)).content.decode()

    assert '<pre class="dt-traceback">Traceback (most recent call last):' in html
    assert "ValueError: the data is &lt;wrong&gt;" in html
    assert "builtins.ValueError" in html
    assert "&quot;field&quot;: &quot;birthday&quot;" in html  # exception context
    assert "&quot;value&quot;: 1" in html  # kwargs of trigger a
    assert '<table class="dt-timestamps">' in html
    assert "<th>failed</th>" in html
    assert failed.celery_task_id in html


def test_instance_page_shows_with_params_from_the_configuration(admin_client, db):
    manager = TriggerManager("params")
    manager.update_configuration({"t_p": task(["a"], withParams={"a": {"lang": "fr"}})})
    manager.fire("a")

    html = admin_client.get(instance_url(manager.get_instance("t_p#0"))).content.decode()

    assert "&quot;lang&quot;: &quot;fr&quot;" in html


def test_instance_page_links_to_the_celery_task_result(admin_client, failed):
    row = TaskResult.objects.create(task_id=failed.celery_task_id, status="FAILURE")

    html = admin_client.get(instance_url(failed)).content.decode()

    url = reverse("admin:django_celery_results_taskresult_change", args=[row.pk])
    assert f'<a href="{url}">{failed.celery_task_id} (FAILURE)</a>' in html


def test_instance_page_links_a_replay_to_its_parent_and_back(admin_client, failed, manager):
    replay = manager.replay_failed_instance("t_a#0")

    parent_html = admin_client.get(instance_url(failed)).content.decode()
    replay_html = admin_client.get(instance_url(replay)).content.decode()

    assert f'<a href="{instance_url(replay)}">t_a#1</a>' in parent_html
    assert f'<a href="{instance_url(failed)}">t_a#0</a>' in replay_html


def test_instance_page_offers_the_fixes_of_a_failed_instance(admin_client, failed):
    set_log_level(failed)

    html = admin_client.get(instance_url(failed)).content.decode()

    assert f'href="{instance_url(failed, "replay")}"' in html
    assert f'href="{instance_url(failed, "skip")}"' in html
    assert f'href="{instance_url(failed, "resolve_logs")}"' in html


def test_sessions_and_instances_cannot_be_added(admin_client, db):
    assert admin_client.get(reverse("admin:django_triggers_triggersession_add")).status_code == 403
    assert admin_client.get(reverse("admin:django_triggers_taskinstance_add")).status_code == 403


def test_posting_to_an_instance_page_changes_nothing(admin_client, failed):
    response = admin_client.post(instance_url(failed), {"status": "finished", "_save": "Save"})

    assert response.status_code == 403
    assert TaskInstance.objects.get(pk=failed.pk).status == "failed"


def test_an_instance_can_be_deleted_with_the_delete_permission(admin_client, failed):
    response = admin_client.post(instance_url(failed, "delete"), {"post": "yes"})

    assert response.status_code == 302
    assert not TaskInstance.objects.filter(pk=failed.pk).exists()


def test_a_viewer_cannot_delete_an_instance(viewer_client, failed):
    response = viewer_client.post(instance_url(failed, "delete"), {"post": "yes"})

    assert response.status_code == 403
    assert TaskInstance.objects.filter(pk=failed.pk).exists()


def test_configurations_and_fires_are_listed_read_only(admin_client, manager):
    manager.fire("a", {"value": 1})

    configs = admin_client.get(reverse("admin:django_triggers_taskconfig_changelist"))
    fires = admin_client.get(reverse("admin:django_triggers_firedtrigger_changelist"))

    assert [c.name for c in configs.context["cl"].result_list] == ["t_a", "t_b"]
    assert [f.trigger_name for f in fires.context["cl"].result_list] == ["a"]
    assert configs.context["action_form"] is None
    assert fires.context["action_form"] is None
    for model in ("taskconfig", "firedtrigger"):
        assert admin_client.get(reverse(f"admin:django_triggers_{model}_add")).status_code == 403


# -- replay ---------------------------------------------------------------------------


def test_replay_action_asks_for_replacement_kwargs_first(admin_client, failed, manager):
    response = post_action(admin_client, "replay_instances", [failed])

    assert response.status_code == 200
    html = response.content.decode()
    assert '<textarea name="replacement_kwargs"' in html
    assert 'name="apply"' in html
    assert '<input type="hidden" name="action" value="replay_instances">' in html
    assert status_of(manager, "t_a#0") == "failed"


def test_replay_action_replays_and_names_the_new_instance(admin_client, failed, manager):
    response = post_action(admin_client, "replay_instances", [failed], apply="Replay")

    assert response.status_code == 302
    assert response["Location"] == reverse(CHANGELIST)
    assert status_of(manager, "t_a#0") == "replayed"
    replay = manager.get_instance("t_a#1")
    assert replay.status == "scheduled"
    assert replay.parent_id == failed.pk
    assert replay.kwargs == {"a": {"value": 1}}
    assert messages_of(admin_client.get(response["Location"])) == ["Replayed t_a#0 as t_a#1."]


def test_replay_action_applies_replacement_kwargs(admin_client, failed, manager):
    post_action(
        admin_client,
        "replay_instances",
        [failed],
        apply="Replay",
        replacement_kwargs='{"a": {"value": 2, "fixed": true}}',
    )

    assert manager.get_instance("t_a#1").kwargs == {"a": {"value": 2, "fixed": True}}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", "Replacement kwargs is not valid JSON"),
        ("[1, 2]", "Replacement kwargs must be a JSON object"),
        ('{"a": 3}', "The kwargs of trigger &#x27;a&#x27; must be a JSON object"),
        ('{"a": {"x": "\\u0000"}}', "the value at a.x holds a NUL character"),
        ('{"a": {"x": NaN}}', "the value at a.x is not encodable"),
    ],
)
def test_replay_action_with_bad_replacement_kwargs_shows_the_error_and_changes_nothing(
    admin_client, failed, manager, text, error
):
    response = post_action(
        admin_client, "replay_instances", [failed], apply="Replay", replacement_kwargs=text
    )

    assert response.status_code == 200
    assert error in response.content.decode()
    assert response.context["form"].errors
    assert status_of(manager, "t_a#0") == "failed"
    assert manager.instances_of_task("t_a") == [failed]


def test_replay_action_passes_kwargs_of_a_trigger_the_task_does_not_wait_for(
    admin_client, failed, manager
):
    post_action(
        admin_client,
        "replay_instances",
        [failed],
        apply="Replay",
        replacement_kwargs='{"extra": {"note": "by hand"}}',
    )

    assert manager.get_instance("t_a#1").kwargs["extra"] == {"note": "by hand"}


def test_replay_action_reports_instances_that_are_not_failed_and_leaves_them(
    admin_client, failed, manager
):
    manager.update_configuration({"t_c": task(["c"])})
    manager.fire("c")
    scheduled = manager.get_instance("t_c#0")

    response = post_action(admin_client, "replay_instances", [failed, scheduled], apply="Replay")

    assert messages_of(admin_client.get(response["Location"])) == [
        "cannot replay task instance 't_c#0': its status is 'scheduled' "
        "(only failed instances can be replayed)",
        "Replayed t_a#0 as t_a#1.",
    ]
    assert status_of(manager, "t_c#0") == "scheduled"
    assert [i.name for i in manager.instances_of_task("t_c")] == ["t_c#0"]
    assert status_of(manager, "t_a#0") == "replayed"


def test_replay_goes_through_the_manager_class_of_the_session(
    admin_client, db, django_capture_on_commit_callbacks
):
    manager = HookedManager("hooked")
    manager.update_configuration({"t_a": task(["a"])})
    manager.fire("a")
    instance = fail(manager, "t_a#0")
    HookedManager.replayed.clear()

    with django_capture_on_commit_callbacks(execute=True):
        post_action(admin_client, "replay_instances", [instance], apply="Replay")

    assert HookedManager.replayed == ["t_a#1"]
    assert TriggerSession.objects.get(uid="hooked").manager_class == HookedManager.class_path()


def test_replay_page_of_an_instance_leads_to_the_same_form(admin_client, failed):
    response = admin_client.get(instance_url(failed, "replay"))

    assert response.status_code == 200
    html = response.content.decode()
    assert '<textarea name="replacement_kwargs"' in html
    assert f'action="{instance_url(failed, "replay")}"' in html


def test_replay_page_of_an_instance_replays_it_and_opens_the_replay(admin_client, failed, manager):
    response = admin_client.post(
        instance_url(failed, "replay"),
        {"replacement_kwargs": '{"a": {"value": 3}}', "apply": "Replay"},
    )

    replay = manager.get_instance("t_a#1")
    assert response["Location"] == instance_url(replay)
    assert replay.kwargs == {"a": {"value": 3}}


def test_replay_page_of_an_unknown_instance_redirects_with_a_message(admin_client, db):
    response = admin_client.get(
        reverse("admin:django_triggers_taskinstance_replay", args=[12345]), follow=True
    )

    assert response.status_code == 200
    assert messages_of(response) == [
        "Task instance with ID '12345' doesn't exist. Perhaps it was deleted?"
    ]


@pytest.mark.django_db(transaction=True)
def test_a_replayed_instance_runs_again_and_its_cascade_follows(
    admin_client, trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {
            "t_flaky": {"after": ["start"], "run": "tests.FailUntilReplayed"},
            "t_next": {"after": ["t_flaky"], "run": ECHO},
        }
    )
    trigger_manager.fire("start", {"attempt": "first"})
    triggers.assertInstanceFailed("t_flaky#0", RuntimeError)

    post_action(
        admin_client,
        "replay_instances",
        [trigger_manager.get_instance("t_flaky#0")],
        apply="Replay",
        replacement_kwargs='{"start": {"attempt": "fixed"}}',
    )

    triggers.assertInstanceReplayed("t_flaky#0")
    triggers.assertInstanceFinished("t_flaky#1", {"received": {"start": {"attempt": "fixed"}}})
    triggers.assertInstanceFinished("t_next#0")


# -- skip -----------------------------------------------------------------------------


def test_skip_action_asks_for_cascade_and_result_first(admin_client, failed, manager):
    response = post_action(admin_client, "skip_instances", [failed])

    html = response.content.decode()
    assert 'type="checkbox" name="cascade"' in html
    assert '<textarea name="result"' in html
    assert status_of(manager, "t_a#0") == "failed"


def test_skip_action_without_cascade_skips_and_fires_nothing(admin_client, failed, manager):
    response = post_action(admin_client, "skip_instances", [failed], apply="Skip")

    assert status_of(manager, "t_a#0") == "skipped"
    assert not FiredTrigger.objects.filter(trigger_name="t_a").exists()
    assert manager.instances_of_task("t_b") == []
    assert messages_of(admin_client.get(response["Location"])) == ["Skipped t_a#0."]


def test_skip_action_with_cascade_fires_the_task_trigger_with_the_result(
    admin_client, failed, manager
):
    post_action(
        admin_client,
        "skip_instances",
        [failed],
        apply="Skip",
        cascade="on",
        result='{"subjectId": 42}',
    )

    skipped = manager.get_instance("t_a#0")
    assert skipped.status == "skipped"
    assert skipped.result == {"subjectId": 42}
    fire = FiredTrigger.objects.get(trigger_name="t_a")
    assert (fire.kwargs, fire.source) == ({"subjectId": 42}, FiredTrigger.SKIP)
    assert manager.get_instance("t_b#0").kwargs == {"t_a": {"subjectId": 42}}


def test_skip_action_with_a_result_that_is_not_an_object_changes_nothing(
    admin_client, failed, manager
):
    response = post_action(
        admin_client, "skip_instances", [failed], apply="Skip", cascade="on", result='"done"'
    )

    assert "The result must be a JSON object" in response.content.decode()
    assert status_of(manager, "t_a#0") == "failed"
    assert not FiredTrigger.objects.filter(trigger_name="t_a").exists()


def test_skip_action_reports_instances_that_are_not_failed(admin_client, failed, manager):
    manager.replay_failed_instance("t_a#0")

    response = post_action(admin_client, "skip_instances", [failed], apply="Skip")

    assert messages_of(admin_client.get(response["Location"])) == [
        "cannot skip task instance 't_a#0': its status is 'replayed' "
        "(only failed instances can be skipped)"
    ]
    assert status_of(manager, "t_a#0") == "replayed"


def test_skip_page_of_an_instance_skips_it(admin_client, failed, manager):
    response = admin_client.post(instance_url(failed, "skip"), {"apply": "Skip"})

    assert response["Location"] == instance_url(failed)
    assert status_of(manager, "t_a#0") == "skipped"


# -- logs -----------------------------------------------------------------------------


def test_mark_logs_resolved_action_resolves_the_logs(admin_client, failed, manager):
    set_log_level(failed)

    response = post_action(admin_client, "mark_logs_resolved", [failed])

    instance = manager.get_instance("t_a#0")
    assert instance.logs_marked_resolved is True
    assert instance.logs_resolved is True
    assert instance.status == "failed"
    assert messages_of(admin_client.get(response["Location"])) == [
        "Marked the logs of t_a#0 resolved."
    ]


def test_resolve_logs_page_asks_then_resolves(admin_client, failed, manager):
    set_log_level(failed)

    asked = admin_client.get(instance_url(failed, "resolve_logs"))
    assert asked.status_code == 200
    assert manager.get_instance("t_a#0").logs_resolved is False

    response = admin_client.post(instance_url(failed, "resolve_logs"), {"apply": "Mark"})

    assert response["Location"] == instance_url(failed)
    assert manager.get_instance("t_a#0").logs_resolved is True


@pytest.mark.django_db(transaction=True)
def test_logs_of_a_task_that_logged_an_error_can_be_resolved(
    admin_client, trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {"t_log": {"after": ["start"], "run": "tests.LogAtLevels"}}
    )
    trigger_manager.fire("start", {"levels": ["ERROR"]})
    triggers.assertInstanceFinished("t_log#0")
    instance = trigger_manager.get_instance("t_log#0")
    assert instance.logs_resolved is False

    post_action(admin_client, "mark_logs_resolved", [instance])

    assert trigger_manager.get_instance("t_log#0").logs_resolved is True


# -- firing a trigger -------------------------------------------------------------------


def test_fire_trigger_action_fires_into_the_session_with_the_admin_source(admin_client, manager):
    first = post_action(admin_client, "fire_trigger", [manager.session], url=SESSIONS)
    event_id = first.context["form"]["event_id"].value()

    response = post_action(
        admin_client,
        "fire_trigger",
        [manager.session],
        url=SESSIONS,
        apply="Fire",
        trigger_name="a",
        kwargs='{"value": 5}',
        event_id=event_id,
    )

    fire = FiredTrigger.objects.get(trigger_name="a")
    assert (fire.kwargs, fire.source, fire.event_id) == ({"value": 5}, "admin", event_id)
    assert manager.get_instance("t_a#0").status == "scheduled"
    assert messages_of(admin_client.get(response["Location"])) == [
        "Fired 'a' into session 'session-1'; it scheduled t_a#0."
    ]


def test_fire_trigger_action_needs_exactly_one_session(admin_client, manager):
    other = TriggerManager("session-2")

    response = post_action(
        admin_client, "fire_trigger", [manager.session, other.session], url=SESSIONS
    )

    assert messages_of(admin_client.get(response["Location"])) == [
        "Select exactly one session to fire a trigger into."
    ]
    assert not FiredTrigger.objects.exists()


def test_fire_trigger_with_bad_kwargs_shows_the_error_and_fires_nothing(admin_client, manager):
    response = admin_client.post(
        session_url(manager.session, "fire"),
        {"trigger_name": "a", "kwargs": "[1]", "event_id": "e-1", "apply": "Fire"},
    )

    assert response.status_code == 200
    assert "The kwargs must be a JSON object" in response.content.decode()
    assert not FiredTrigger.objects.exists()


def test_fire_trigger_page_posted_twice_fires_once(admin_client, manager):
    data = {"trigger_name": "a", "kwargs": "", "event_id": "admin-1", "apply": "Fire"}

    admin_client.post(session_url(manager.session, "fire"), data)
    admin_client.post(session_url(manager.session, "fire"), data)

    assert FiredTrigger.objects.filter(trigger_name="a").count() == 1
    assert [i.name for i in manager.instances_of_task("t_a")] == ["t_a#0"]


def test_fire_trigger_page_shows_what_the_manager_refuses_as_a_form_error(admin_client, manager):
    manager.fire("a", {"value": 1}, event_id="admin-1")

    response = admin_client.post(
        session_url(manager.session, "fire"),
        {"trigger_name": "a", "kwargs": '{"value": 2}', "event_id": "admin-1", "apply": "Fire"},
    )

    assert response.status_code == 200
    assert "event id &#x27;admin-1&#x27; was already used" in response.content.decode()
    assert FiredTrigger.objects.count() == 1


def test_fire_trigger_page_suggests_the_triggers_of_the_configuration(admin_client, manager):
    response = admin_client.get(session_url(manager.session, "fire"))

    assert response.context["known_triggers"] == ["a", "t_a", "t_b"]
    assert '<option value="t_a">' in response.content.decode()


# -- permissions ---------------------------------------------------------------------


def action_choices(response):
    form = response.context["action_form"]
    return [] if form is None else [name for name, _ in form.fields["action"].choices if name]


def test_a_superuser_is_offered_every_action(admin_client, failed):
    instances = admin_client.get(reverse(CHANGELIST))
    sessions = admin_client.get(reverse(SESSIONS))

    assert action_choices(instances) == [
        "delete_selected",
        "replay_instances",
        "skip_instances",
        "mark_logs_resolved",
    ]
    assert action_choices(sessions) == ["delete_selected", "fire_trigger"]
    assert '<option value="replay_instances">Replay selected failed instances</option>' in (
        instances.content.decode()
    )


def test_a_user_with_only_view_permissions_is_offered_no_action(viewer_client, failed):
    instances = viewer_client.get(reverse(CHANGELIST))
    sessions = viewer_client.get(reverse(SESSIONS))

    assert instances.status_code == sessions.status_code == 200
    assert instances.context["action_form"] is None
    assert sessions.context["action_form"] is None
    assert "replay_instances" not in instances.content.decode()


def test_a_user_with_the_replay_permission_is_offered_only_replay(client, failed):
    client.force_login(make_user("replayer", "view_taskinstance", "replay_taskinstance"))

    assert action_choices(client.get(reverse(CHANGELIST))) == ["replay_instances"]


@pytest.mark.parametrize("action", ["replay_instances", "skip_instances", "mark_logs_resolved"])
def test_a_viewer_posting_an_instance_action_is_refused(viewer_client, failed, manager, action):
    first = post_action(viewer_client, action, [failed])
    applied = post_action(viewer_client, action, [failed], apply="Go", cascade="on")

    assert first.status_code == applied.status_code == 403
    instance = manager.get_instance("t_a#0")
    assert (instance.status, instance.logs_marked_resolved) == ("failed", False)


def test_a_viewer_posting_the_fire_action_is_refused(viewer_client, manager):
    response = post_action(
        viewer_client,
        "fire_trigger",
        [manager.session],
        url=SESSIONS,
        apply="Fire",
        trigger_name="a",
        event_id="e",
    )

    assert response.status_code == 403
    assert not FiredTrigger.objects.exists()


def test_a_viewer_is_refused_the_action_pages(viewer_client, failed, manager):
    pages = [
        session_url(manager.session, "fire"),
        instance_url(failed, "replay"),
        instance_url(failed, "skip"),
        instance_url(failed, "resolve_logs"),
    ]
    data = {"trigger_name": "a", "event_id": "e", "apply": "Go"}

    assert [viewer_client.get(page).status_code for page in pages] == [403] * 4
    assert [viewer_client.post(page, data).status_code for page in pages] == [403] * 4
    assert not FiredTrigger.objects.filter(source=FiredTrigger.ADMIN).exists()
    assert manager.get_instance("t_a#0").status == "failed"


def test_a_viewer_sees_no_fix_links(viewer_client, failed, manager):
    set_log_level(failed)

    instance_html = viewer_client.get(instance_url(failed)).content.decode()
    session_html = viewer_client.get(session_url(manager.session)).content.decode()

    for html in (instance_html, session_html):
        assert not re.search(r"/(replay|skip|resolve-logs|fire)/", html)
