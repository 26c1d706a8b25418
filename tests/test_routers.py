"""Where sessions live: the routing helpers, and the shipped SessionHashRouter.

These need no second database: routers are given aliases they only name.
Tests with sessions really spread over two databases are in
``tests/test_shards.py`` and ``tests/test_shards_worker.py``.
"""

import hashlib
import os
import subprocess
import sys
from collections import Counter

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance, TriggerSession
from django_triggers.recovery import recover
from django_triggers.routers import (
    SESSION_DATABASE_HINT,
    SESSION_UID_HINT,
    SessionHashRouter,
    read_database,
    session_database,
    session_databases,
)
from tests.helpers import ROOT

#: The settings of a project without database routers (TRIGGERS_SHARDS installs one).
without_routers = override_settings(DATABASE_ROUTERS=[])


class Aliases(SessionHashRouter):
    """SessionHashRouter over aliases it does not check against DATABASES."""

    aliases: tuple[str, ...] = ("a", "b", "c")

    def session_databases(self) -> list[str]:
        return list(self.aliases)


class AskedUid:
    """A router that puts every session whose uid starts with ``elsewhere`` in ``other``."""

    def db_for_write(self, model, **hints):
        uid = hints.get(SESSION_UID_HINT)
        return "other" if uid and uid.startswith("elsewhere") else None

    db_for_read = db_for_write

    def session_databases(self) -> list[str]:
        return ["default", "other"]


class NoDefault:
    """Keeps sessions out of ``default``: they are all in ``elsewhere``."""

    def db_for_write(self, model, **hints):
        return "elsewhere" if model._meta.app_label == "django_triggers" else None

    def session_databases(self) -> list[str]:
        return ["elsewhere"]


class AdminReplica:
    """Sends the admin's reads of ``default``'s sessions to ``default_replica``."""

    def db_for_read(self, model, **hints):
        if hints.get(SESSION_DATABASE_HINT) == "default":
            return "default_replica"
        return None


# -- the helpers, without routers -------------------------------------------------


@without_routers
def test_without_routers_every_session_is_in_the_default_database():
    assert session_database("order-17") == "default"
    assert session_databases() == ["default"]


@without_routers
def test_without_routers_the_admin_reads_the_database_it_shows():
    assert read_database(TriggerSession, "default") == "default"


# -- the helpers, with routers -----------------------------------------------------


@override_settings(DATABASE_ROUTERS=[f"{__name__}.AskedUid"])
def test_a_router_places_a_session_by_the_uid_it_is_given_as_a_hint():
    assert session_database("elsewhere-1") == "other"
    assert session_database("here-1") == "default"


@override_settings(DATABASE_ROUTERS=[f"{__name__}.AskedUid", f"{__name__}.Aliases"])
def test_the_databases_of_sessions_are_those_the_routers_list_in_order_each_once():
    assert session_databases() == ["default", "other", "a", "b", "c"]


@override_settings(DATABASE_ROUTERS=[f"{__name__}.AdminReplica"])
def test_a_router_may_send_the_admins_reads_of_a_database_to_a_replica():
    assert read_database(TriggerSession, "default") == "default_replica"
    assert read_database(TaskInstance, "default", session_uid="order-17") == "default_replica"


# -- SessionHashRouter ----------------------------------------------------------------


def test_the_hash_router_places_a_session_by_a_sha256_of_alias_and_uid():
    router = Aliases()

    def weight(alias: str, uid: str) -> int:
        digest = hashlib.sha256(f"{alias}\x00{uid}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    for uid in ("order-1", "order-2", "questionnaire-17", "ü-ß-✓"):
        assert router.database_for(uid) == max("abc", key=lambda alias: weight(alias, uid))


def test_the_hash_router_spreads_sessions_over_every_alias():
    placed = Counter(Aliases().database_for(f"order-{i}") for i in range(3000))

    assert set(placed) == {"a", "b", "c"}
    assert all(800 < count < 1200 for count in placed.values()), placed


def test_adding_an_alias_moves_only_the_sessions_that_now_belong_to_it():
    before, after = Aliases(), Aliases()
    after.aliases = ("a", "b", "c", "d")
    uids = [f"order-{i}" for i in range(3000)]

    moved = [uid for uid in uids if before.database_for(uid) != after.database_for(uid)]

    assert {after.database_for(uid) for uid in moved} == {"d"}
    assert 600 < len(moved) < 900  # about a quarter


def test_the_hash_router_places_a_session_alike_in_every_process():
    """Unlike hash(), which Python salts per process."""
    script = (
        "import django; django.setup();"
        "from django_triggers.routers import session_database;"
        "print(','.join(session_database(f'order-{i}') for i in range(40)))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "TRIGGERS_SHARDS": "1",
    }
    placements = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }

    assert len(placements) == 1
    assert set(placements.pop().split(",")) == {"default", "shard1"}


def test_the_hash_router_routes_the_librarys_rows_by_session_uid_and_by_the_row_they_follow():
    router = Aliases()
    row = TaskInstance()
    row._state.db = "b"

    assert router.db_for_write(TaskInstance, session_uid="order-1") == router.database_for(
        "order-1"
    )
    assert router.db_for_read(FiredTrigger, session_uid="order-1") == router.database_for("order-1")
    assert router.db_for_read(TaskInstance, instance=row) == "b"
    assert router.db_for_write(TriggerSession) is None  # no hint: left to the next router
    assert router.db_for_write(User, session_uid="order-1") is None  # not the library's


def test_the_hash_router_migrates_the_library_on_its_aliases_only():
    router = Aliases()

    assert router.allow_migrate("a", "django_triggers") is True
    assert router.allow_migrate("default", "django_triggers", model_name="taskinstance") is False
    assert router.allow_migrate("default", "auth") is None


def test_the_hash_router_allows_relations_between_the_librarys_rows_only():
    router = Aliases()

    assert router.allow_relation(TaskInstance(), TriggerSession()) is True
    assert router.allow_relation(TaskInstance(), User()) is None


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        (None, "TRIGGERS_SESSION_DATABASES"),
        ([], "TRIGGERS_SESSION_DATABASES"),
        ("default", "TRIGGERS_SESSION_DATABASES"),
        (["default", "nowhere"], "'nowhere'"),
    ],
)
def test_the_hash_router_refuses_a_setting_that_names_no_databases(settings, setting, named):
    if setting is None:
        del settings.TRIGGERS_SESSION_DATABASES
    else:
        settings.TRIGGERS_SESSION_DATABASES = setting

    with pytest.raises(ImproperlyConfigured, match=named):
        SessionHashRouter().database_for("order-1")


# -- refusing unknown databases ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["triggers_recover", "triggers_cleanup"])
def test_a_sweep_refuses_a_database_that_does_not_exist_naming_it(command):
    extra = ["--older-than", "1d"] if command == "triggers_cleanup" else []

    with pytest.raises(CommandError, match="unknown database 'nowhere'"):
        call_command(command, "--database", "nowhere", *extra)


@override_settings(DATABASE_ROUTERS=[f"{__name__}.NoDefault"])
@pytest.mark.parametrize("command", ["triggers_recover", "triggers_cleanup"])
def test_a_sweep_refuses_a_database_that_holds_no_sessions_naming_it(command):
    extra = ["--older-than", "1d"] if command == "triggers_cleanup" else []

    with pytest.raises(CommandError, match="database 'default' holds no sessions"):
        call_command(command, "--database", "default", *extra)


@pytest.mark.django_db
@without_routers
def test_a_sweep_limited_to_the_default_database_sweeps_it():
    manager = TriggerManager("order-17")
    manager.fire("nothing-listens")

    report = recover(databases=["default"])

    assert report.errors == []
    assert TriggerSession.objects.filter(uid="order-17").exists()
