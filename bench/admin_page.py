"""``python -m bench.admin_page [--db sqlite|postgres]``: the admin page of a big session.

Builds, on a database of its own (as ``python -m bench`` does), a session of
2,000 configured tasks, 5,000 instances and 4,800 fires among a hundred small
sessions (see :mod:`bench.big_session`), then requests its admin page
several times through Django's test client and prints the server time
(median and slowest), the size of the HTML, and the number of SQL
statements; with ``--browser``, also the height of the page in a headless
Chromium 1,280 pixels wide. The list of sessions is measured the same way,
and so is ``triggers_show`` of the big session (in this process: the time
the command spends, without starting Python and Django). The last line of
stdout is one JSON object with every figure. A measurement, not a test:
nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.env import DEFAULT_BROKER, BenchmarkSetupError, migrate, prepare_environment

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.admin_page",
        description="Time the admin page of a big session on a dedicated database.",
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--pg-name",
        default="django_triggers_bench_admin",
        help="PostgreSQL database, dropped and recreated by the run (must contain 'bench')",
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed requests (default 7)")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=5000)
    parser.add_argument("--fires", type=int, default=4800)
    parser.add_argument("--sessions", type=int, default=100, help="small sessions around it")
    parser.add_argument(
        "--browser", action="store_true", help="also measure the page's height in Chromium"
    )
    return parser.parse_args(argv)


def progress(message: str) -> None:
    print(f"[bench.admin_page] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="django-triggers-bench-admin-"))
    try:
        try:
            prepare_environment(
                db=args.db, workdir=workdir, pg_name=args.pg_name, broker=DEFAULT_BROKER
            )
        except BenchmarkSetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        import django

        django.setup()
        migrate()
        figures = measure(args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"server time: median {figures['server_ms_median']} ms, max {figures['server_ms_max']} ms"
    )
    print(f"HTML: {figures['html_bytes']:,} bytes; SQL statements: {figures['queries']}")
    if figures.get("page_height_px") is not None:
        print(
            f"page height at 1280 px: {figures['page_height_px']:,} px; "
            f"page width: {figures['page_width_px']} px"
        )
    print(
        f"session list: median {figures['list_ms_median']} ms, {figures['list_html_bytes']:,} bytes"
    )
    print(
        f"triggers_show: median {figures['show_ms_median']} ms, {figures['show_lines']} lines, "
        f"{figures['show_queries']} SQL statements"
    )
    print(json.dumps(figures))
    return 0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from bench.big_session import build_big_session, build_small_sessions

    settings.ALLOWED_HOSTS = ["*"]
    started = time.perf_counter()
    build_small_sessions(args.sessions // 2, prefix="before")
    big = build_big_session(tasks=args.tasks, instances=args.instances, fires=args.fires)
    build_small_sessions(args.sessions - args.sessions // 2, prefix="after")
    progress(
        f"built {big.tasks} tasks, {big.instances} instances, {big.fires} fires "
        f"in {time.perf_counter() - started:.1f} s"
    )
    user = User.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    url = reverse("admin:django_triggers_triggersession_change", args=[big.session.pk])
    list_url = reverse("admin:django_triggers_triggersession_changelist")

    def timed(target: str) -> tuple[list[float], bytes, int]:
        client.get(target)  # warm: templates, the first connection
        times = []
        for _ in range(args.repeat):
            begin = time.perf_counter()
            response = client.get(target)
            times.append((time.perf_counter() - begin) * 1000)
            assert response.status_code == 200, response.status_code
        with CaptureQueriesContext(connection) as queries:
            response = client.get(target)
        return times, response.content, len(queries.captured_queries)

    page_times, html, queries = timed(url)
    list_times, list_html, list_queries = timed(list_url)
    show_times, show_output, show_queries = timed_show(big.session.uid, args.repeat)
    figures: dict[str, Any] = {
        "db": args.db,
        "tasks": big.tasks,
        "instances": big.instances,
        "fires": big.fires,
        "server_ms_median": round(statistics.median(page_times), 1),
        "server_ms_max": round(max(page_times), 1),
        "html_bytes": len(html),
        "queries": queries,
        "list_ms_median": round(statistics.median(list_times), 1),
        "list_html_bytes": len(list_html),
        "list_queries": list_queries,
        "show_ms_median": round(statistics.median(show_times), 1),
        "show_lines": len(show_output.splitlines()),
        "show_queries": show_queries,
        "page_height_px": None,
        "page_width_px": None,
    }
    if args.browser:
        figures.update(browser_figures(client, url))
    return figures


def timed_show(uid: str, repeat: int) -> tuple[list[float], str, int]:
    """The times of ``triggers_show`` of the session (after a warm run), its output and
    its SQL statements."""
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def show() -> str:
        stdout = io.StringIO()
        call_command("triggers_show", uid, stdout=stdout)
        return stdout.getvalue()

    show()
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        show()
        times.append((time.perf_counter() - begin) * 1000)
    with CaptureQueriesContext(connection) as queries:
        output = show()
    return times, output, len(queries.captured_queries)


def browser_figures(client: Any, path: str) -> dict[str, Any]:
    """The page's height and width in a headless Chromium 1,280 pixels wide."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1024"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        base = f"http://127.0.0.1:{server.port}"
        driver.get(f"{base}/admin/login/")
        cookie = client.cookies["sessionid"]
        driver.add_cookie({"name": "sessionid", "value": cookie.value, "path": "/"})
        driver.get(base + path)
        height, width = driver.execute_script(
            "return [document.documentElement.scrollHeight, document.documentElement.scrollWidth]"
        )
    finally:
        driver.quit()
        server.terminate()
    return {"page_height_px": int(height), "page_width_px": int(width)}


if __name__ == "__main__":
    sys.exit(main())
