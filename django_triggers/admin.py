"""The admin for operators: what each session is waiting for, what failed and why, and the fix.

Pages read the models; every change (replay, skip, resolving logs, firing)
goes through the session's :class:`~django_triggers.manager.TriggerManager`,
so the admin follows the same rules, locks and hooks as the application. Data
cannot be added or edited here; deleting follows Django's delete permission.
Each action needs its own permission, and a user who lacks it is neither
offered the action nor allowed to post it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import NestedObjects, quote, unquote
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst, slugify
from django.utils.translation import gettext, gettext_lazy

from django_triggers.graph import (
    focus,
    session_graph,
    to_dot,
    to_mermaid,
    to_svg,
    workflow_order,
)
from django_triggers.management.base import (
    MANAGER_ERRORS,
    InvalidJSON,
    describe_refusal,
    json_type,
    load_json,
)
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance, TriggerSession
from django_triggers.routers import read_database, session_database, session_databases

if TYPE_CHECKING:
    from django.db.models.expressions import Combinable
    from django_stubs_ext import StrOrPromise

T = TypeVar("T")

#: What the manager raises for a request it refuses: wrong status, bad kwargs,
#: unknown instance or session, values it cannot store, an unusable manager
#: class; and what the database raises for a value that slipped past its
#: checks. Shown to the operator on the form; nothing was changed.
REFUSALS = (*MANAGER_ERRORS, ImportError)

STATUSES = [status for status, _ in TaskInstance.STATUS_CHOICES]
UNRESOLVED_STATUSES = [s for s in STATUSES if s not in TaskInstance.RESOLVED_STATUSES]

#: How many fires and instances each page of the session page's lists holds.
TIMELINE_LIMIT = 50
INSTANCES_LIMIT = 100
#: How many instances each list of the session page's attention panel shows
#: before it links to the rest; the same for the tasks without an instance.
ATTENTION_LIMIT = 50
#: How many tasks the configuration section shows before it links to the rest;
#: up to this many, it is open and shows the configuration as JSON too.
CONFIGURATION_LIMIT = 50
#: The most nodes the session page's diagram draws: past it, the diagram
#: shows what needs attention and what is next to it, and links to the whole.
DIAGRAM_LIMIT = 80
#: Kwargs longer than this, as one line of JSON, are folded on the session page.
KWARGS_FOLD = 100

#: What the attention panel lists: each kind of instance needing attention,
#: which instances those are, and the instance list's filter showing them all.
ATTENTION_KINDS: list[tuple[str, Q, dict[str, str]]] = [
    ("failed", Q(status=TaskInstance.FAILED), {"status__exact": TaskInstance.FAILED}),
    ("waiting", Q(status=TaskInstance.UNSTARTED), {"status__exact": TaskInstance.UNSTARTED}),
    (
        "in_flight",
        Q(status__in=[TaskInstance.SCHEDULED, TaskInstance.RUNNING]),
        {"status__in": f"{TaskInstance.SCHEDULED},{TaskInstance.RUNNING}"},
    ),
    ("unresolved_logs", TaskInstance.unresolved_logs_q(), {"logs": "unresolved"}),
]


@dataclass(frozen=True)
class _Brief:
    """What the session page reads of every instance of a session: a few columns."""

    id: int
    task_name: str
    number: int
    status: str
    log_level: int
    logs_marked_resolved: bool
    status_changed_at: Any

    def is_kind(self, kind: str) -> bool:
        """Whether it belongs to the attention list ``kind`` (see :data:`ATTENTION_KINDS`)."""
        if kind == "failed":
            return self.status == TaskInstance.FAILED
        if kind == "waiting":
            return self.status == TaskInstance.UNSTARTED
        if kind == "in_flight":
            return self.status in (TaskInstance.SCHEDULED, TaskInstance.RUNNING)
        # As TaskInstance.unresolved_logs_q() and TaskInstance.logs_resolved.
        return (
            self.log_level >= logging.ERROR
            and not self.logs_marked_resolved
            and self.status not in TaskInstance.LOGS_IRRELEVANT_STATUSES
        )


@dataclass(frozen=True)
class Page:
    """One page of a long list of the session page: where it is and the links around it."""

    number: int
    count: int
    total: int
    previous_url: str | None
    next_url: str | None

    @property
    def paginated(self) -> bool:
        return self.count > 1


def _page_number(request: HttpRequest, parameter: str, total: int, size: int) -> tuple[int, int]:
    """The page asked for in ``parameter`` (1 if none or not a page), and how many there are."""
    count = max(-(-total // size), 1)
    try:
        number = int(request.GET.get(parameter, "1"))
    except ValueError:
        number = 1
    return min(max(number, 1), count), count


def _page(request: HttpRequest, parameter: str, number: int, count: int, total: int) -> Page:
    def url(to: int) -> str:
        query = request.GET.copy()
        query[parameter] = str(to)
        return f"?{query.urlencode()}#{parameter.removesuffix('_page')}"

    return Page(
        number=number,
        count=count,
        total=total,
        previous_url=url(number - 1) if number > 1 else None,
        next_url=url(number + 1) if number < count else None,
    )


@dataclass(frozen=True)
class AttentionList:
    """The instances of a session needing one kind of attention: the first ones, and
    how many there are in all, so that the page never hides that there are more."""

    rows: list[dict[str, Any]]
    total: int
    #: The instance list, filtered to all of them.
    url: str

    @property
    def hidden(self) -> int:
        """How many of them are not listed."""
        return self.total - len(self.rows)

    def __bool__(self) -> bool:
        return self.total > 0


def session_manager(session_uid: str) -> TriggerManager:
    """A manager of the class recorded on the session, for acting on it.

    Using the application's own class runs its hooks, and keeps the session
    recorded as managed by it (workers rebuild that class for cascades).
    """
    return TriggerManager.for_existing_session(session_uid)


# -- databases ---------------------------------------------------------------------
# Sessions may live in several databases (django_triggers.routers). A list
# shows one of them, named by its ``database`` parameter (the first database
# of sessions without one); an object page is in the database of the list it
# was opened from, which Django carries in ``_changelist_filters``. Without
# several databases, no URL changes.

#: The query parameter naming the database whose sessions a list shows.
DATABASE_PARAMETER = "database"


def requested_database(request: HttpRequest) -> str | None:
    """The database of sessions a page is about; ``None`` if it names one that holds none."""
    alias = request.GET.get(DATABASE_PARAMETER)
    if alias is None:
        preserved = QueryDict(request.GET.get("_changelist_filters", ""))
        alias = preserved.get(DATABASE_PARAMETER)
    known = session_databases()
    if alias is None:
        return known[0]
    return alias if alias in known else None


def database_query(database: str) -> dict[str, str]:
    """The query parameters keeping a list on ``database`` (none for the first)."""
    return {} if database == session_databases()[0] else {DATABASE_PARAMETER: database}


def object_query(database: str) -> str:
    """What a link to an object page of ``database`` ends with ("" for the first database).

    The database goes in the filters Django carries from a list to its
    object pages, so that their own links (delete, history, back to the
    list) stay in it too.
    """
    query = database_query(database)
    return f"?{urlencode({'_changelist_filters': urlencode(query)})}" if query else ""


def home_database(obj: Any) -> str:
    """The database of sessions holding ``obj``, which may have been read from a replica of it."""
    read_from = str(obj._state.db)
    known = session_databases()
    if read_from in known:
        return read_from
    for database in known:
        if read_database(type(obj), database) == read_from:
            return database
    return read_from


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON, for reading.

    A lone surrogate, which a stored value may hold but a page cannot (it is
    not UTF-8), is written as its JSON escape.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder)
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode()


def json_block(value: Any) -> SafeString:
    return format_html('<pre class="dt-json">{}</pre>', pretty_json(value))


def status_badge(status: str) -> SafeString:
    return format_html('<span class="dt-badge dt-status-{}">{}</span>', status, status)


def can_replay_instances(request: HttpRequest) -> bool:
    return request.user.has_perm("django_triggers.replay_taskinstance")


def can_skip_instances(request: HttpRequest) -> bool:
    return request.user.has_perm("django_triggers.skip_taskinstance")


def _parse_json_object(text: str, what: StrOrPromise) -> dict[str, Any] | None:
    """The JSON object in ``text``; ``None`` when it is blank.

    Parsed as the management commands parse JSON (see
    :func:`~django_triggers.management.base.load_json`): text nested too deeply
    to parse and objects naming a key twice are refused, not a server error.
    """
    text = text.strip()
    if not text:
        return None
    try:
        value = load_json(text, str(what))
    except InvalidJSON as exc:
        raise ValidationError(str(exc), code="invalid_json") from None
    if not isinstance(value, dict):
        raise ValidationError(
            gettext("%(what)s must be a JSON object ({...}), not %(type)s")
            % {"what": what, "type": json_type(value)},
            code="not_an_object",
        )
    return value


class JSONObjectField(forms.CharField):
    """A textarea holding an optional JSON object; blank means ``None``."""

    def __init__(self, *, what: StrOrPromise, **kwargs: Any):
        self.what = what
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "widget", forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "dt-json-input"})
        )
        super().__init__(strip=False, **kwargs)

    def clean(self, value: Any) -> dict[str, Any] | None:
        """The text, checked as text (no NUL characters), parsed: an object, not a str."""
        return _parse_json_object(super().clean(value), self.what)


class ReplayForm(forms.Form):
    replacement_kwargs = JSONObjectField(
        what=gettext_lazy("Replacement kwargs"),
        label=gettext_lazy("Replacement kwargs"),
        help_text=gettext_lazy(
            "Optional. A JSON object mapping trigger names to new kwargs, for example "
            '{"firstPageReceived": {"responses": {"name": "Ada"}}}. Triggers not named '
            "keep the kwargs of the failed instance; triggers the task does not wait for "
            "are passed to it too."
        ),
    )

    def clean_replacement_kwargs(self) -> dict[str, dict[str, Any]] | None:
        replacement: dict[str, Any] | None = self.cleaned_data["replacement_kwargs"]
        if replacement is None:
            return None
        for trigger, kwargs in replacement.items():
            if not isinstance(kwargs, dict):
                raise ValidationError(
                    gettext(
                        "The kwargs of trigger %(trigger)s must be a JSON object, not %(type)s."
                    )
                    % {"trigger": repr(trigger), "type": json_type(kwargs)}
                )
        return replacement


class SkipForm(forms.Form):
    cascade = forms.BooleanField(
        required=False,
        label=gettext_lazy("Cascade"),
        help_text=gettext_lazy(
            "Fire the task's own trigger, as if it had finished, so that the tasks "
            "waiting for it can run."
        ),
    )
    result = JSONObjectField(
        what=gettext_lazy("The result"),
        label=gettext_lazy("Result"),
        help_text=gettext_lazy(
            "Optional. A JSON object recorded as the instance's result and, with "
            "cascade, fired as the kwargs of its trigger."
        ),
    )


class FireTriggerForm(forms.Form):
    trigger_name = forms.CharField(
        max_length=255,
        label=gettext_lazy("Trigger name"),
        widget=forms.TextInput(attrs={"list": "dt-known-triggers", "size": 60}),
    )
    kwargs = JSONObjectField(
        what=gettext_lazy("The kwargs"),
        label=gettext_lazy("Kwargs"),
        help_text=gettext_lazy("Optional. A JSON object; blank fires the trigger with {}."),
    )
    #: Makes the form's submission idempotent: posting it twice fires once.
    event_id = forms.CharField(max_length=255, widget=forms.HiddenInput)


class ConfirmForm(forms.Form):
    """A confirmation with nothing to fill in."""


# -- list filters ------------------------------------------------------------------


class InstanceStatusFilter(admin.SimpleListFilter):
    """Sessions holding at least one instance in the chosen status."""

    title = "instance status"
    parameter_name = "instance_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status, f"has {status} instances") for status in STATUSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in STATUSES:
            return queryset
        return queryset.filter(
            Exists(TaskInstance.objects.filter(session=OuterRef("pk"), status=self.value()))
        )


class AttentionFilter(admin.SimpleListFilter):
    """Sessions an operator should look at."""

    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("unresolved", "unresolved instances"),
            ("logs", "unresolved logs"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        instances = TaskInstance.objects.filter(session=OuterRef("pk"))
        if self.value() == "unresolved":
            return queryset.filter(Exists(instances.filter(status__in=UNRESOLVED_STATUSES)))
        if self.value() == "logs":
            return queryset.filter(Exists(instances.filter(TaskInstance.unresolved_logs_q())))
        return queryset


class LogsFilter(admin.SimpleListFilter):
    title = "logs"
    parameter_name = "logs"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("unresolved", "unresolved"), ("resolved", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "unresolved":
            return queryset.filter(TaskInstance.unresolved_logs_q())
        if self.value() == "resolved":
            return queryset.exclude(TaskInstance.unresolved_logs_q())
        return queryset


class DatabaseFilter(admin.SimpleListFilter):
    """The database whose sessions a list shows; offered when there are several."""

    title = gettext_lazy("database")
    parameter_name = DATABASE_PARAMETER

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        databases = session_databases()
        return [(alias, alias) for alias in databases] if len(databases) > 1 else []

    def choices(self, changelist: Any) -> Iterator[Any]:
        # No "All": a list shows one database at a time, the first by default.
        current = self.value() or session_databases()[0]
        for alias, title in self.lookup_choices:
            yield {
                "selected": alias == current,
                "query_string": changelist.get_query_string({self.parameter_name: alias}),
                "display": title,
            }

    def get_facet_counts(self, pk_attname: str, filtered_qs: QuerySet[Any]) -> dict[str, Any]:
        return {}  # a list counts the rows of one database only

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset  # OperatorAdmin.get_queryset reads the chosen database


# -- shared machinery ------------------------------------------------------------------


class OperatorAdmin(admin.ModelAdmin):
    """Read-only model admin whose actions each require their own permission."""

    class Media:
        css = {"all": ["django_triggers/admin.css"]}

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if requested_database(request) is None:
            self.message_user(
                request,
                gettext("No sessions are in a database named %(alias)s; they are in %(known)s.")
                % {
                    "alias": repr(request.GET.get(DATABASE_PARAMETER)),
                    "known": ", ".join(map(repr, session_databases())),
                },
                messages.ERROR,
            )
            return HttpResponseRedirect(self._url("changelist"))
        if request.method == "POST" and "action" in request.POST:
            self._check_action_permission(request)
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        """The rows of the database of sessions the page is about, read where the routers say."""
        queryset = super().get_queryset(request)
        database = requested_database(request)
        if database is None:
            return queryset.none()
        return queryset.using(read_database(self.model, database))

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        return [DatabaseFilter, *super().get_list_filter(request)]

    def _check_action_permission(self, request: HttpRequest) -> None:
        """Refuse (403) an action posted by a user without the permissions it requires."""
        names = request.POST.getlist("action")
        try:
            name = names[int(request.POST.get("index", 0))]
        except (IndexError, ValueError):
            return
        action = self.get_action(name)
        if action is None:
            return
        # Django 6.1 returns an Action object; earlier versions a tuple.
        func = getattr(action, "func", None) or action[0]
        required = getattr(func, "allowed_permissions", ())
        if required and not any(
            getattr(self, f"has_{permission}_permission")(request) for permission in required
        ):
            raise PermissionDenied

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """As Django's, but collected in the database the objects were read from.

        Django collects them in the database the routers give with no hint,
        which cannot tell which database holds a session.
        """
        objects = list(objs)
        if not objects:
            return [], {}, set(), []
        collector = NestedObjects(using=objects[0]._state.db, origin=objects)
        collector.collect(objects)
        perms_needed: set[str] = set()

        def described(obj: Any) -> Any:
            opts = obj._meta
            label = f"{capfirst(opts.verbose_name)}: {obj}"
            if not self.admin_site.is_registered(type(obj)):
                return label
            if not self.admin_site.get_model_admin(type(obj)).has_delete_permission(request, obj):
                perms_needed.add(str(opts.verbose_name))
            url = self._url("change", quote(obj.pk), model=type(obj), database=home_database(obj))
            return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)

        to_delete = collector.nested(described)
        protected = [described(obj) for obj in collector.protected]
        by_model: dict[Any, set[Any]] = collector.model_objs  # keyed by model classes
        counts = {
            str(model._meta.verbose_name_plural): len(found) for model, found in by_model.items()
        }
        return to_delete, counts, perms_needed, protected

    def _url(
        self, name: str, *args: Any, model: type[Any] | None = None, database: str | None = None
    ) -> str:
        """The URL of an admin page; of an object page in ``database``, if given."""
        opts = (model or self.model)._meta
        url = reverse(
            f"admin:{opts.app_label}_{opts.model_name}_{name}",
            args=args,
            current_app=self.admin_site.name,
        )
        return url + object_query(database) if database is not None else url

    def _object_or_redirect(
        self, request: HttpRequest, object_id: str
    ) -> tuple[Any, HttpResponse | None]:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            # Set on every prepared model; the stubs allow None (before preparation).
            verbose_name = cast("StrOrPromise", self.opts.verbose_name)
            self.message_user(
                request,
                f"{verbose_name.capitalize()} with ID {object_id!r} doesn't exist. "
                f"Perhaps it was deleted?",
                messages.WARNING,
            )
            return None, HttpResponseRedirect(self._url("changelist"))
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        return obj, None

    def _wrap(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        return self.admin_site.admin_view(view)

    def _render_form(
        self,
        request: HttpRequest,
        template: str,
        *,
        title: str,
        form: forms.Form,
        objects: Iterable[Any],
        submit_label: str,
        cancel_url: str,
        action_name: str | None = None,
        form_action: str | None = None,
        breadcrumb_object: Any = None,
        **context: Any,
    ) -> TemplateResponse:
        """An intermediate page: what will be acted on, a form, and an ``apply`` button.

        ``action_name`` set: the page continues a changelist action and posts
        back to the changelist with the selected ids. Otherwise it posts to
        ``form_action``, a page of its own.
        """
        objects = list(objects)
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            f"admin/django_triggers/{template}",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": title,
                "form": form,
                "objects": objects,
                "selected_ids": [obj.pk for obj in objects],
                "action_name": action_name,
                "form_action": form_action,
                "submit_label": submit_label,
                "cancel_url": cancel_url,
                "breadcrumb_object": breadcrumb_object,
                "breadcrumb_object_url": (
                    self._url(
                        "change", breadcrumb_object.pk, database=home_database(breadcrumb_object)
                    )
                    if breadcrumb_object
                    else None
                ),
                "media": self.media + form.media,
                **context,
            },
        )


def _managers() -> Callable[[str], TriggerManager]:
    """A lookup of session managers by uid, built once per session within one request."""
    cache: dict[str, TriggerManager] = {}

    def get(uid: str) -> TriggerManager:
        if uid not in cache:
            cache[uid] = session_manager(uid)
        return cache[uid]

    return get


def _act_on_failed_instances(
    instances: Iterable[TaskInstance], act: Callable[[TriggerManager, TaskInstance], T]
) -> tuple[list[tuple[TaskInstance, T]], list[str]]:
    """Apply ``act`` to each instance through its session's manager: to every failed
    one, or to none.

    Returns what ``act`` returned for each instance, and the manager's refusals
    for the instances that were not failed, which the form said it would leave
    as they are. A refusal for a failed instance (a value that cannot be
    stored, an instance changed meanwhile, an unusable manager class) undoes
    the whole action and is raised as a ``ValidationError`` naming it.
    Instances are handled in the order of their sessions, so that two actions
    on the same sessions take their locks in the same order; each in its
    session's own database, one transaction per database.
    """
    manager_for = _managers()
    done: list[tuple[TaskInstance, T]] = []
    left: list[str] = []
    instances = list(instances)
    with ExitStack() as transactions:
        for database in sorted({session_database(i.session.uid) for i in instances}):
            transactions.enter_context(transaction.atomic(using=database))
        for instance in sorted(instances, key=lambda i: (i.session_id, i.name)):
            try:
                # A savepoint: a refusal by the database leaves the others' work usable.
                with transaction.atomic(using=session_database(instance.session.uid)):
                    done.append((instance, act(manager_for(instance.session.uid), instance)))
            except REFUSALS as exc:
                if instance.status != TaskInstance.FAILED:
                    left.append(describe_refusal(exc))
                    continue
                raise ValidationError(
                    gettext("%(instance)s: %(refusal)s")
                    % {"instance": instance.name, "refusal": describe_refusal(exc)},
                    code="refused",
                ) from exc
    return done, left


# -- sessions ------------------------------------------------------------------


@admin.register(TriggerSession)
class TriggerSessionAdmin(OperatorAdmin):
    list_display = [
        "uid",
        "created_at",
        "last_fire",
        "instance_counts",
        "unresolved",
        "unresolved_logs",
    ]
    list_filter = [InstanceStatusFilter, AttentionFilter, "created"]
    search_fields = ["uid"]
    actions = ["fire_trigger"]
    fieldsets = [
        (None, {"fields": ["uid", "created", "last_fire", "instance_counts", "manager_class"]}),
    ]
    readonly_fields = ["last_fire", "instance_counts"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TriggerSession]:
        latest_fire = FiredTrigger.objects.filter(session=OuterRef("pk")).order_by("-id")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_fire_at=Subquery(latest_fire.values("fired_at")[:1]),
                unresolved_count=Count(
                    "instances", filter=Q(instances__status__in=UNRESOLVED_STATUSES)
                ),
                has_unresolved_logs=Exists(
                    TaskInstance.objects.filter(session=OuterRef("pk")).filter(
                        TaskInstance.unresolved_logs_q()
                    )
                ),
                **{
                    f"count_{status}": Count("instances", filter=Q(instances__status=status))
                    for status in STATUSES
                },
            )
        )

    @admin.display(description=gettext_lazy("created"), ordering="created")
    def created_at(self, session: TriggerSession) -> str:
        return _when(session.created)

    @admin.display(description=gettext_lazy("last fire"), ordering="last_fire_at")
    def last_fire(self, session: TriggerSession) -> str:
        return _when(getattr(session, "last_fire_at", None))

    @admin.display(description="instances")
    def instance_counts(self, session: TriggerSession) -> SafeString | str:
        counts = [(getattr(session, f"count_{s}", 0), s) for s in STATUSES]
        shown = [(count, status) for count, status in counts if count]
        if not shown:
            return "none"
        return format_html_join(
            " ",
            '<span class="dt-badge dt-status-{}">{} {}</span>',
            ((status, count, status) for count, status in shown),
        )

    @admin.display(description="unresolved", ordering="unresolved_count")
    def unresolved(self, session: TriggerSession) -> int:
        return getattr(session, "unresolved_count", 0)

    @admin.display(description="unresolved logs", boolean=True, ordering="has_unresolved_logs")
    def unresolved_logs(self, session: TriggerSession) -> bool:
        return bool(getattr(session, "has_unresolved_logs", False))

    def has_fire_trigger_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_triggers.fire_trigger")

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/fire/",
                self._wrap(self.fire_trigger_view),
                name=f"{info}_fire",
            ),
            path(
                "<path:object_id>/graph.mmd",
                self._wrap(self.mermaid_view),
                name=f"{info}_mermaid",
            ),
            path("<path:object_id>/graph.dot", self._wrap(self.dot_view), name=f"{info}_dot"),
            path("<path:object_id>/graph.svg", self._wrap(self.svg_view), name=f"{info}_svg"),
            path(
                "<path:object_id>/configuration.json",
                self._wrap(self.configuration_view),
                name=f"{info}_configuration",
            ),
            *super().get_urls(),
        ]

    # -- the session page ---------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        session = self.get_object(request, unquote(object_id))
        if session is not None and self.has_view_permission(request, session):
            extra_context = {**(extra_context or {}), **self._overview(request, session)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _overview(self, request: HttpRequest, session: TriggerSession) -> dict[str, Any]:
        """What the session page shows below its fields.

        In a number of queries that does not grow with the session, and in
        HTML of a bounded size: what needs attention comes first, complete in
        its counts, with links to whatever a list leaves out; the long lists
        come a page at a time; the diagram of a big workflow shows the part
        needing attention, and links to the whole.
        """
        manager = TriggerManager.of_session(session)
        can_replay = can_replay_instances(request)
        can_skip = can_skip_instances(request)
        instances_url = self._url("changelist", model=TaskInstance)
        # Read where the session was read; linked to as in its own database.
        read_from, database = session._state.db, home_database(session)

        configs = list(TaskConfig.objects.using(read_from).filter(session=session).order_by("id"))
        order = workflow_order({config.name: config.after for config in configs})
        rank = {name: index for index, name in enumerate(order)}
        briefs = sorted(
            (
                _Brief(*values)
                for values in TaskInstance.objects.using(read_from)
                .filter(session=session)
                .order_by()
                .values_list(
                    "id",
                    "task_name",
                    "number",
                    "status",
                    "log_level",
                    "logs_marked_resolved",
                    "status_changed_at",
                )
            ),
            key=lambda brief: (rank.get(brief.task_name, len(rank)), brief.task_name, brief.number),
        )

        # Which instances the page lists: the attention panel's, and a page of all.
        listed_ids: dict[str, list[int]] = {}
        totals: dict[str, int] = {}
        for kind, _, _ in ATTENTION_KINDS:
            members = [brief for brief in briefs if brief.is_kind(kind)]
            if kind == "in_flight":
                # The longest in flight first: those are the ones that may be stuck.
                members.sort(key=lambda brief: brief.status_changed_at)
            totals[kind] = len(members)
            listed_ids[kind] = [brief.id for brief in members[:ATTENTION_LIMIT]]
        number, count = _page_number(request, "instances_page", len(briefs), INSTANCES_LIMIT)
        start = (number - 1) * INSTANCES_LIMIT
        page_ids = [brief.id for brief in briefs[start : start + INSTANCES_LIMIT]]
        wanted = set(page_ids).union(*listed_ids.values())
        by_id = {
            instance.pk: self._instance_row(
                instance, can_replay=can_replay, can_skip=can_skip, database=database
            )
            for instance in TaskInstance.objects.using(read_from)
            .filter(pk__in=wanted)
            .select_related("config", "parent")
        }
        rows = [by_id[pk] for pk in page_ids if pk in by_id]
        attention: dict[str, Any] = {}
        for kind, _, changelist_filter in ATTENTION_KINDS:
            query = urlencode(
                {
                    "session__id__exact": str(session.pk),
                    **changelist_filter,
                    **database_query(database),
                }
            )
            attention[kind] = AttentionList(
                rows=[by_id[pk] for pk in listed_ids[kind] if pk in by_id],
                total=totals[kind],
                url=f"{instances_url}?{query}",
            )

        graph = session_graph(manager, configs)
        fired_names = {
            node.label for node in graph.nodes if node.kind == "trigger" and node.status == "fired"
        }
        started_tasks = {brief.task_name for brief in briefs}
        by_name = {config.name: config for config in configs}
        not_started = [name for name in order if name not in started_tasks]
        configs_url = self._url("changelist", model=TaskConfig)
        session_filter = urlencode(
            {"session__id__exact": str(session.pk), **database_query(database)}
        )
        attention["not_started"] = AttentionList(
            rows=[
                {
                    "name": name,
                    "after_missing": [n for n in by_name[name].after if n not in fired_names],
                    "after_fired": [n for n in by_name[name].after if n in fired_names],
                }
                for name in not_started[:ATTENTION_LIMIT]
            ],
            total=len(not_started),
            url=f"{configs_url}?{session_filter}&instances=none",
        )

        status_counts = {status: 0 for status in STATUSES}
        for brief in briefs:
            status_counts[brief.status] = status_counts.get(brief.status, 0) + 1
        part = focus(graph, DIAGRAM_LIMIT)
        configuration = {config.name: config.as_directives() for config in configs}
        shown_configs = order[:CONFIGURATION_LIMIT]
        return {
            "attention": attention,
            "needs_attention": any(attention.values()),
            "status_counts": [(status, n) for status, n in status_counts.items() if n],
            "instance_count": len(briefs),
            "instance_rows": rows,
            "instances_page": _page(request, "instances_page", number, count, len(briefs)),
            "instances_truncated": count > 1,
            "instances_url": f"{instances_url}?{session_filter}",
            "task_count": len(configs),
            "configuration": [
                {"name": name, "directives": _directive_rows(configuration[name])}
                for name in shown_configs
            ],
            "configuration_hidden": len(configs) - len(shown_configs),
            "configuration_json": (
                pretty_json(configuration) if len(configs) <= CONFIGURATION_LIMIT else None
            ),
            "configuration_url": f"{configs_url}?{session_filter}",
            "configuration_json_url": self._url("configuration", session.pk, database=database),
            **self._timeline(request, session),
            # to_svg escapes every name it draws: this is the one markup marked safe.
            "graph_svg": mark_safe(to_svg(part.graph)),
            "graph_focus": part,
            "graph_url": self._url("svg", session.pk, database=database),
            "mermaid_url": self._url("mermaid", session.pk, database=database),
            "dot_url": self._url("dot", session.pk, database=database),
            "fire_trigger_url": (
                self._url("fire", session.pk, database=database)
                if self.has_fire_trigger_permission(request)
                else None
            ),
        }

    def _timeline(self, request: HttpRequest, session: TriggerSession) -> dict[str, Any]:
        """A page of the session's fires, the latest first page, each page in the order fired."""
        read_from, database = session._state.db, home_database(session)
        fires = FiredTrigger.objects.using(read_from).filter(session=session)
        fired_count = fires.count()
        number, count = _page_number(request, "timeline_page", fired_count, TIMELINE_LIMIT)
        offset = (number - 1) * TIMELINE_LIMIT
        fired = list(fires.order_by("-id")[offset : offset + TIMELINE_LIMIT])[::-1]
        scheduled_names = {name for item in fired for name in item.scheduled_instances}
        instance_ids = (
            dict(
                TaskInstance.objects.using(read_from)
                .filter(session=session, name__in=scheduled_names)
                .order_by()
                .values_list("name", "pk")
            )
            if scheduled_names
            else {}
        )
        first_number = fired_count - offset - len(fired) + 1
        timeline = []
        for index, item in enumerate(fired):
            line = json.dumps(item.kwargs, ensure_ascii=False, cls=DjangoJSONEncoder)
            timeline.append(
                {
                    "fired": item,
                    "number": first_number + index,
                    "kwargs": pretty_json(item.kwargs),
                    "kwargs_line": line if len(line) <= KWARGS_FOLD else None,
                    "kwargs_summary": line[: KWARGS_FOLD - 1] + "\u2026",
                    "scheduled": [
                        (
                            name,
                            self._url(
                                "change", instance_ids[name], model=TaskInstance, database=database
                            )
                            if name in instance_ids
                            else None,
                        )
                        for name in item.scheduled_instances
                    ],
                }
            )
        return {
            "timeline": timeline,
            "timeline_count": fired_count,
            "timeline_page": _page(request, "timeline_page", number, count, fired_count),
            "timeline_hidden": fired_count - len(fired),
        }

    def _instance_row(
        self, instance: TaskInstance, *, can_replay: bool, can_skip: bool, database: str
    ) -> dict[str, Any]:
        """An instance as the session page lists it, with the fixes the user may apply."""
        failed = instance.status == TaskInstance.FAILED
        return {
            "instance": instance,
            "url": self._url("change", instance.pk, model=TaskInstance, database=database),
            "parent_url": (
                self._url("change", instance.parent_id, model=TaskInstance, database=database)
                if instance.parent_id
                else None
            ),
            "waiting": (
                instance.waiting_for() if instance.status == TaskInstance.UNSTARTED else None
            ),
            "error": _error_summary(instance),
            "replay_url": (
                self._url("replay", instance.pk, model=TaskInstance, database=database)
                if failed and can_replay
                else None
            ),
            "skip_url": (
                self._url("skip", instance.pk, model=TaskInstance, database=database)
                if failed and can_skip
                else None
            ),
        }

    # -- diagram downloads ------------------------------------------------------------

    def mermaid_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._graph_text(request, object_id, to_mermaid, "mmd")

    def dot_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._graph_text(request, object_id, to_dot, "dot")

    def svg_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The whole diagram, however big, as an SVG image the browser shows."""
        session, redirect = self._object_or_redirect(request, object_id)
        if redirect:
            return redirect
        svg = to_svg(session_graph(TriggerManager.of_session(session)))
        response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
        # Names in it are escaped; nothing in it may run or load anything.
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return response

    def configuration_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The configuration as written, as JSON: all of it, however many tasks."""
        session, redirect = self._object_or_redirect(request, object_id)
        if redirect:
            return redirect
        configuration = {
            config.name: config.as_directives()
            for config in TaskConfig.objects.using(session._state.db)
            .filter(session=session)
            .order_by("id")
        }
        return self._download(session, pretty_json(configuration), "json", "application/json")

    def _graph_text(
        self,
        request: HttpRequest,
        object_id: str,
        render: Callable[[Any], str],
        extension: str,
    ) -> HttpResponse:
        session, redirect = self._object_or_redirect(request, object_id)
        if redirect:
            return redirect
        text = render(session_graph(TriggerManager.of_session(session)))
        return self._download(session, text, extension, "text/plain")

    def _download(
        self, session: TriggerSession, text: str, extension: str, content_type: str
    ) -> HttpResponse:
        response = HttpResponse(text, content_type=f"{content_type}; charset=utf-8")
        filename = f"{slugify(session.uid) or 'session'}-{session.pk}.{extension}"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    # -- firing -------------------------------------------------------------------------

    @admin.action(
        description="Fire a trigger into the selected session", permissions=["fire_trigger"]
    )
    def fire_trigger(
        self, request: HttpRequest, queryset: QuerySet[TriggerSession]
    ) -> HttpResponse | None:
        sessions = list(queryset[:2])
        if len(sessions) != 1:
            self.message_user(
                request, "Select exactly one session to fire a trigger into.", messages.ERROR
            )
            return None
        return self._fire(
            request,
            sessions[0],
            action_name="fire_trigger",
            success_url=request.get_full_path(),
        )

    def fire_trigger_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_fire_trigger_permission(request):
            raise PermissionDenied
        session, redirect = self._object_or_redirect(request, object_id)
        if redirect:
            return redirect
        database = home_database(session)
        url = self._url("change", session.pk, database=database)
        return self._fire(
            request,
            session,
            form_action=self._url("fire", session.pk, database=database),
            success_url=url,
        )

    def _fire(
        self,
        request: HttpRequest,
        session: TriggerSession,
        *,
        success_url: str,
        action_name: str | None = None,
        form_action: str | None = None,
    ) -> HttpResponse:
        submitted = request.method == "POST" and "apply" in request.POST
        form = FireTriggerForm(
            request.POST if submitted else None,
            initial={"event_id": f"admin-{uuid.uuid4().hex}"},
        )
        if submitted and form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic(using=session_database(session.uid)):
                    scheduled = session_manager(session.uid).fire(
                        data["trigger_name"],
                        data["kwargs"],
                        source=FiredTrigger.ADMIN,
                        event_id=data["event_id"],
                    )
            except REFUSALS as exc:
                form.add_error(None, describe_refusal(exc))
            else:
                names = ", ".join(instance.name for instance in scheduled) or gettext("no instance")
                self.message_user(
                    request,
                    gettext("Fired %(trigger)s into session %(session)s; it scheduled %(names)s.")
                    % {
                        "trigger": repr(data["trigger_name"]),
                        "session": repr(session.uid),
                        "names": names,
                    },
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(success_url)
        # Read as stored: building a manager would create the session again if it was deleted.
        configuration = {
            config.name: config.as_directives()
            for config in TaskConfig.objects.using(session._state.db).filter(session=session)
        }
        known = sorted(
            {
                name
                for directives in configuration.values()
                for key in ("after", "unless")
                for name in directives.get(key, [])
            }
            | {d["andEvery"] for d in configuration.values() if "andEvery" in d}
            | set(configuration)
        )
        return self._render_form(
            request,
            "fire_trigger_form.html",
            title=f"Fire a trigger into session {session.uid}",
            form=form,
            objects=[session],
            submit_label="Fire",
            cancel_url=self._url("change", session.pk, database=home_database(session)),
            action_name=action_name,
            form_action=form_action,
            breadcrumb_object=session,
            session=session,
            known_triggers=known,
        )


def _when(value: datetime | None) -> str:
    """A moment to the second, in the current time zone, short enough not to wrap."""
    if value is None:
        return "-"
    return dateformat.format(timezone.localtime(value), "Y-m-d H:i:s")


def _directive_rows(directives: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per directive, with how its value is best shown: names, text or JSON."""
    rows = []
    for key, value in directives.items():
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            rows.append({"key": key, "names": value})
        elif isinstance(value, str | int | float | bool):
            rows.append({"key": key, "text": str(value)})
        else:
            rows.append({"key": key, "json": pretty_json(value)})
    return rows


def _error_summary(instance: TaskInstance) -> str:
    metadata = instance.metadata or {}
    kind = metadata.get("exception_type")
    if not kind:
        return ""
    message = metadata.get("exception_message")
    return f"{kind}: {message}" if message else str(kind)


# -- lists in workflow order ------------------------------------------------------


def workflow_rank(database: str, session_id: int, task_field: str) -> Case:
    """The place of each row's task in its session's workflow order, to order a list by.

    ``task_field`` holds the row's task (a ``TaskConfig`` id). The order is
    worked out from the session's task names and ``after`` lists, read in one
    query, without its instances. Tasks that come, in workflow order, in the
    order they were configured share a rank, and are ordered by id within it
    (order by ``task_field`` next): the expression has a branch per such run,
    at most one per step of the workflow, rather than one per task.
    """
    configs = list(
        TaskConfig.objects.using(database)
        .filter(session_id=session_id)
        .order_by("pk")
        .values_list("pk", "name", "after")
    )
    pk_of = {name: pk for pk, name, _ in configs}
    runs: list[list[int]] = []
    for name in workflow_order({name: after for _, name, after in configs}):
        if not runs or pk_of[name] < runs[-1][-1]:
            runs.append([])
        runs[-1].append(pk_of[name])
    return Case(
        *(When(**{f"{task_field}__in": pks}, then=Value(rank)) for rank, pks in enumerate(runs)),
        default=Value(len(runs)),
        output_field=IntegerField(),
    )


#: The field naming the task of each row, in the lists shown in workflow order.
_TASK_FIELDS = {TaskConfig: "pk", TaskInstance: "config_id"}


class WorkflowOrderChangeList(ChangeList):
    """A list filtered to one session, as the session page links to it, shows its tasks
    in workflow order: what runs first comes first. Sorted by a column, or showing
    several sessions, it is ordered as usual."""

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[str | Combinable]:
        ordering = super().get_ordering(request, queryset)
        session_id = self.params.get("session__id__exact", "")
        if ORDER_VAR in self.params or not session_id.isdigit():
            return ordering
        task_field = _TASK_FIELDS[self.model]
        return [workflow_rank(queryset.db, int(session_id), task_field), task_field, *ordering]


# -- instances ------------------------------------------------------------------


@admin.register(TaskInstance)
class TaskInstanceAdmin(OperatorAdmin):
    list_display = [
        "name",
        "session_link",
        "status_badge",
        "retries",
        "log_level_name",
        "logs_resolved",
        "status_changed_at",
        "created",
    ]
    list_filter = ["status", LogsFilter, "created"]
    search_fields = ["name", "session__uid", "=celery_task_id"]
    list_select_related = ["session"]
    actions = ["replay_instances", "skip_instances", "mark_logs_resolved"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "session_link",
                    "status_badge",
                    "run",
                    "retries",
                    "parent_link",
                    "replays_links",
                    "waiting_for",
                ]
            },
        ),
        ("Input", {"fields": ["kwargs_display", "with_params_display", "unless_seen"]}),
        (
            "Outcome",
            {
                "fields": [
                    "result_display",
                    "exception_type",
                    "exception_message",
                    "traceback",
                    "exception_context",
                    "log_level_name",
                    "logs_resolved",
                ]
            },
        ),
        (
            "Timing and Celery",
            {
                "fields": [
                    "timestamps",
                    "created",
                    "status_changed_at",
                    "eta",
                    "deadline",
                    "celery_task_id",
                    "dispatched_at",
                    "task_result_link",
                ]
            },
        ),
        ("All metadata", {"fields": ["metadata_display"], "classes": ["collapse"]}),
    ]
    readonly_fields = [
        "session_link",
        "status_badge",
        "run",
        "parent_link",
        "replays_links",
        "waiting_for",
        "kwargs_display",
        "with_params_display",
        "unless_seen",
        "result_display",
        "exception_type",
        "exception_message",
        "traceback",
        "exception_context",
        "log_level_name",
        "logs_resolved",
        "timestamps",
        "task_result_link",
        "metadata_display",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskInstance]:
        return super().get_queryset(request).select_related("session", "config", "parent")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WorkflowOrderChangeList

    # -- columns and fields ------------------------------------------------------------

    @admin.display(description="session", ordering="session__uid")
    def session_link(self, instance: TaskInstance) -> SafeString:
        url = self._url(
            "change", instance.session_id, model=TriggerSession, database=home_database(instance)
        )
        return format_html('<a href="{}">{}</a>', url, instance.session.uid)

    @admin.display(description="status", ordering="status")
    def status_badge(self, instance: TaskInstance) -> SafeString:
        return status_badge(instance.status)

    @admin.display(description="logs resolved", boolean=True)
    def logs_resolved(self, instance: TaskInstance) -> bool:
        return instance.logs_resolved

    @admin.display(description="log level", ordering="log_level")
    def log_level_name(self, instance: TaskInstance) -> str:
        return instance.log_level_name

    @admin.display(description="runs")
    def run(self, instance: TaskInstance) -> str:
        return instance.config.run

    @admin.display(description="replay of")
    def parent_link(self, instance: TaskInstance) -> SafeString | str:
        if instance.parent is None:
            return "-"
        url = self._url("change", instance.parent_id, database=home_database(instance))
        return format_html('<a href="{}">{}</a>', url, instance.parent.name)

    @admin.display(description="replayed as")
    def replays_links(self, instance: TaskInstance) -> SafeString | str:
        children = instance.replays.order_by("number")
        if not children:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a> {}',
            (
                (
                    self._url("change", c.pk, database=home_database(c)),
                    c.name,
                    status_badge(c.status),
                )
                for c in children
            ),
        )

    @admin.display(description="waiting for")
    def waiting_for(self, instance: TaskInstance) -> SafeString | str:
        if instance.status != TaskInstance.UNSTARTED:
            return "-"
        return _waiting_html(instance.waiting_for(), instance)

    @admin.display(description="kwargs per trigger")
    def kwargs_display(self, instance: TaskInstance) -> SafeString | str:
        if not instance.kwargs:
            return "-"
        return format_html_join(
            "",
            '<div class="dt-kwargs"><strong>{}</strong>{}</div>',
            ((name, json_block(kwargs)) for name, kwargs in instance.kwargs.items()),
        )

    @admin.display(description="withParams")
    def with_params_display(self, instance: TaskInstance) -> SafeString | str:
        return json_block(instance.config.with_params) if instance.config.with_params else "-"

    @admin.display(description="unless triggers seen")
    def unless_seen(self, instance: TaskInstance) -> SafeString | str:
        return _names_html(instance.unless_fired, "dt-seen") if instance.unless_fired else "-"

    @admin.display(description="result")
    def result_display(self, instance: TaskInstance) -> SafeString | str:
        return "-" if instance.result is None else json_block(instance.result)

    @admin.display(description="exception type")
    def exception_type(self, instance: TaskInstance) -> str:
        return instance.metadata.get("exception_type") or "-"

    @admin.display(description="exception message")
    def exception_message(self, instance: TaskInstance) -> str:
        return instance.metadata.get("exception_message") or "-"

    @admin.display(description="traceback")
    def traceback(self, instance: TaskInstance) -> SafeString | str:
        text = instance.metadata.get("traceback")
        return format_html('<pre class="dt-traceback">{}</pre>', text) if text else "-"

    @admin.display(description="exception context")
    def exception_context(self, instance: TaskInstance) -> SafeString | str:
        context = instance.metadata.get("exception_context")
        return json_block(context) if context else "-"

    @admin.display(description="timestamps")
    def timestamps(self, instance: TaskInstance) -> SafeString | str:
        stamps = instance.metadata.get("timestamps") or {}
        if not stamps:
            return "-"
        return format_html(
            '<table class="dt-timestamps">{}</table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", stamps.items()),
        )

    @admin.display(description="Celery task result")
    def task_result_link(self, instance: TaskInstance) -> SafeString | str:
        task_result = instance.task_result
        if task_result is None:
            return "-"
        try:
            url = reverse(
                "admin:django_celery_results_taskresult_change",
                args=[task_result.pk],
                current_app=self.admin_site.name,
            )
        except NoReverseMatch:
            return f"{task_result.task_id} ({task_result.status})"
        return format_html('<a href="{}">{} ({})</a>', url, task_result.task_id, task_result.status)

    @admin.display(description="metadata")
    def metadata_display(self, instance: TaskInstance) -> SafeString:
        return json_block(instance.metadata)

    # -- the instance page -----------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        instance = self.get_object(request, unquote(object_id))
        if instance is not None:
            failed = instance.status == TaskInstance.FAILED
            database = home_database(instance)
            extra_context = {
                **(extra_context or {}),
                "replay_url": (
                    self._url("replay", instance.pk, database=database)
                    if failed and self.has_replay_permission(request)
                    else None
                ),
                "skip_url": (
                    self._url("skip", instance.pk, database=database)
                    if failed and self.has_skip_permission(request)
                    else None
                ),
                "resolve_logs_url": (
                    self._url("resolve_logs", instance.pk, database=database)
                    if not instance.logs_resolved and self.has_resolve_logs_permission(request)
                    else None
                ),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/replay/",
                self._wrap(self.replay_view),
                name=f"{info}_replay",
            ),
            path("<path:object_id>/skip/", self._wrap(self.skip_view), name=f"{info}_skip"),
            path(
                "<path:object_id>/resolve-logs/",
                self._wrap(self.resolve_logs_view),
                name=f"{info}_resolve_logs",
            ),
            *super().get_urls(),
        ]

    # -- permissions -----------------------------------------------------------------

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return can_replay_instances(request)

    def has_skip_permission(self, request: HttpRequest) -> bool:
        return can_skip_instances(request)

    def has_resolve_logs_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_triggers.resolve_logs_taskinstance")

    # -- actions -----------------------------------------------------------------------

    @admin.action(description="Replay selected failed instances", permissions=["replay"])
    def replay_instances(
        self, request: HttpRequest, queryset: QuerySet[TaskInstance]
    ) -> HttpResponse:
        return self._replay(
            request,
            list(queryset),
            action_name="replay_instances",
            success_url=request.get_full_path(),
        )

    @admin.action(description="Skip selected failed instances", permissions=["skip"])
    def skip_instances(
        self, request: HttpRequest, queryset: QuerySet[TaskInstance]
    ) -> HttpResponse:
        return self._skip(
            request,
            list(queryset),
            action_name="skip_instances",
            success_url=request.get_full_path(),
        )

    @admin.action(
        description="Mark the logs of selected instances resolved", permissions=["resolve_logs"]
    )
    def mark_logs_resolved(self, request: HttpRequest, queryset: QuerySet[TaskInstance]) -> None:
        self._resolve_logs(request, list(queryset))

    # -- the same, from the instance page -------------------------------------------

    def replay_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._instance_form_view(request, object_id, "replay", self._replay)

    def skip_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._instance_form_view(request, object_id, "skip", self._skip)

    def _instance_form_view(
        self, request: HttpRequest, object_id: str, action: str, handler: Any
    ) -> HttpResponse:
        """An action's form for one instance, from its page, back to its page when done."""
        if not getattr(self, f"has_{action}_permission")(request):
            raise PermissionDenied
        instance, redirect = self._object_or_redirect(request, object_id)
        if redirect:
            return redirect
        database = home_database(instance)
        response: HttpResponse = handler(
            request,
            [instance],
            form_action=self._url(action, instance.pk, database=database),
            success_url=self._url("change", instance.pk, database=database),
        )
        return response

    def resolve_logs_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_resolve_logs_permission(request):
            raise PermissionDenied
        instance, redirect = self._object_or_redirect(request, object_id)
        if redirect:
            return redirect
        database = home_database(instance)
        url = self._url("change", instance.pk, database=database)
        submitted = request.method == "POST" and "apply" in request.POST
        form = ConfirmForm(request.POST if submitted else None)
        if submitted and form.is_valid():
            try:
                with transaction.atomic(using=session_database(instance.session.uid)):
                    session_manager(instance.session.uid).mark_instance_logs_resolved(instance.name)
            except REFUSALS as exc:
                form.add_error(None, describe_refusal(exc))
            else:
                self._report_resolved(request, [instance.name])
                return HttpResponseRedirect(url)
        return self._render_form(
            request,
            "resolve_logs_form.html",
            title=gettext("Mark the logs of %(instance)s resolved") % {"instance": instance.name},
            form=form,
            objects=[instance],
            submit_label="Mark resolved",
            cancel_url=url,
            form_action=self._url("resolve_logs", instance.pk, database=database),
            breadcrumb_object=instance,
            rows=_instance_rows([instance]),
        )

    # -- what the actions do ------------------------------------------------------------

    def _replay(
        self,
        request: HttpRequest,
        instances: list[TaskInstance],
        *,
        success_url: str,
        action_name: str | None = None,
        form_action: str | None = None,
    ) -> HttpResponse:
        submitted = request.method == "POST" and "apply" in request.POST
        form = ReplayForm(request.POST if submitted else None)
        if submitted and form.is_valid():
            replacement = form.cleaned_data["replacement_kwargs"]
            try:
                clones, left = _act_on_failed_instances(
                    instances,
                    lambda manager, instance: manager.replay_failed_instance(
                        instance.name, replacement
                    ),
                )
            except ValidationError as refusal:
                form.add_error(None, refusal)
            else:
                self._report_left(request, left)
                if clones:
                    done = "; ".join(
                        gettext("%(instance)s as %(replay)s")
                        % {"instance": instance.name, "replay": clone.name}
                        for instance, clone in clones
                    )
                    self.message_user(
                        request, gettext("Replayed %(done)s.") % {"done": done}, messages.SUCCESS
                    )
                if form_action and len(clones) == 1:
                    # From an instance's page, go on to the page of its replay.
                    clone = clones[0][1]
                    success_url = self._url("change", clone.pk, database=home_database(clone))
                return HttpResponseRedirect(success_url)
        return self._render_instances_form(
            request,
            "replay_form.html",
            "Replay failed instances",
            "Replay",
            form,
            instances,
            action_name,
            form_action,
        )

    def _skip(
        self,
        request: HttpRequest,
        instances: list[TaskInstance],
        *,
        success_url: str,
        action_name: str | None = None,
        form_action: str | None = None,
    ) -> HttpResponse:
        submitted = request.method == "POST" and "apply" in request.POST
        form = SkipForm(request.POST if submitted else None)
        if submitted and form.is_valid():
            cascade, result = form.cleaned_data["cascade"], form.cleaned_data["result"]
            try:
                skipped, left = _act_on_failed_instances(
                    instances,
                    lambda manager, instance: manager.skip_failed_instance(
                        instance.name, cascade=cascade, result=result
                    ),
                )
            except ValidationError as refusal:
                form.add_error(None, refusal)
            else:
                self._report_left(request, left)
                if skipped:
                    names = ", ".join(instance.name for instance, _ in skipped)
                    message = (
                        gettext("Skipped %(names)s and fired their triggers.")
                        if cascade
                        else gettext("Skipped %(names)s.")
                    )
                    self.message_user(request, message % {"names": names}, messages.SUCCESS)
                return HttpResponseRedirect(success_url)
        return self._render_instances_form(
            request,
            "skip_form.html",
            "Skip failed instances",
            "Skip",
            form,
            instances,
            action_name,
            form_action,
        )

    def _resolve_logs(self, request: HttpRequest, instances: list[TaskInstance]) -> None:
        """Resolve the logs of each instance on its own: one that cannot be is reported."""
        manager_for = _managers()
        resolved = []
        for instance in instances:
            try:
                with transaction.atomic(using=session_database(instance.session.uid)):
                    manager_for(instance.session.uid).mark_instance_logs_resolved(instance.name)
            except REFUSALS as exc:
                self.message_user(request, describe_refusal(exc), messages.ERROR)
            else:
                resolved.append(instance.name)
        if resolved:
            self._report_resolved(request, resolved)

    def _report_resolved(self, request: HttpRequest, names: list[str]) -> None:
        self.message_user(
            request,
            gettext("Marked the logs of %(names)s resolved.") % {"names": ", ".join(names)},
            messages.SUCCESS,
        )

    def _report_left(self, request: HttpRequest, refusals: list[str]) -> None:
        """Report the instances an action left as they were, not being failed."""
        for refusal in refusals:
            self.message_user(request, refusal, messages.ERROR)

    def _render_instances_form(
        self,
        request: HttpRequest,
        template: str,
        title: str,
        submit_label: str,
        form: forms.Form,
        instances: list[TaskInstance],
        action_name: str | None,
        form_action: str | None,
    ) -> TemplateResponse:
        """The form of an action on instances, from the changelist or an instance's page."""
        return self._render_form(
            request,
            template,
            title=title,
            form=form,
            objects=instances,
            submit_label=submit_label,
            cancel_url=self._cancel_url(instances, form_action),
            action_name=action_name,
            form_action=form_action,
            breadcrumb_object=instances[0] if form_action else None,
            rows=_instance_rows(instances),
        )

    def _cancel_url(self, instances: list[TaskInstance], form_action: str | None) -> str:
        if form_action and instances:
            return self._url("change", instances[0].pk, database=home_database(instances[0]))
        query = database_query(home_database(instances[0])) if instances else {}
        return self._url("changelist") + (f"?{urlencode(query)}" if query else "")


def _instance_rows(instances: Iterable[TaskInstance]) -> list[dict[str, Any]]:
    return [
        {
            "instance": instance,
            # The instance link's query, keeping it in the instance's database.
            "query": object_query(home_database(instance)),
            "error": _error_summary(instance),
            "kwargs": pretty_json(instance.kwargs),
            "after": instance.config.after,
        }
        for instance in instances
    ]


def _waiting_html(waiting: Mapping[str, list[str]], instance: TaskInstance) -> SafeString:
    parts = [
        format_html(
            "<div>Waiting for: {}</div>",
            _names_html(waiting["after_missing"], "dt-missing") or "nothing",
        )
    ]
    if waiting["after_fired"]:
        parts.append(
            format_html("<div>Has seen: {}</div>", _names_html(waiting["after_fired"], "dt-seen"))
        )
    if waiting["unless_fired"] or waiting["unless_missing"]:
        parts.append(
            format_html(
                "<div>Abandoned once all of these fire: {} {}</div>",
                _names_html(waiting["unless_fired"], "dt-seen"),
                _names_html(waiting["unless_missing"], "dt-pending"),
            )
        )
    if instance.deadline:
        parts.append(format_html("<div>Abandoned if still waiting at {}</div>", instance.deadline))
    return format_html_join("", "{}", ((part,) for part in parts))


def _names_html(names: Iterable[str], css_class: str) -> SafeString:
    return format_html_join(
        " ", '<code class="dt-trigger {}">{}</code>', ((css_class, name) for name in names)
    )


# -- configuration and fires (read-only lists) ----------------------------------------


class ConfigInstancesFilter(admin.SimpleListFilter):
    """Tasks with an instance, or without one yet."""

    title = gettext_lazy("instances")
    parameter_name = "instances"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [("none", gettext_lazy("none yet")), ("some", gettext_lazy("at least one"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        instances = TaskInstance.objects.filter(config=OuterRef("pk"))
        if self.value() == "none":
            return queryset.exclude(Exists(instances))
        if self.value() == "some":
            return queryset.filter(Exists(instances))
        return queryset


@admin.register(TaskConfig)
class TaskConfigAdmin(OperatorAdmin):
    list_display = ["name", "session", "run", "after_names", "and_every", "unless_names"]
    list_filter = [ConfigInstancesFilter]
    search_fields = ["name", "session__uid", "run"]
    list_select_related = ["session"]
    actions = None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WorkflowOrderChangeList

    @admin.display(description="after")
    def after_names(self, config: TaskConfig) -> str:
        return ", ".join(config.after)

    @admin.display(description="unless")
    def unless_names(self, config: TaskConfig) -> str:
        return ", ".join(config.unless)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FiredTrigger)
class FiredTriggerAdmin(OperatorAdmin):
    list_display = ["trigger_name", "session", "source", "fired_at", "event_id"]
    list_filter = ["source", "fired_at"]
    search_fields = ["trigger_name", "session__uid", "event_id"]
    list_select_related = ["session"]
    actions = None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
