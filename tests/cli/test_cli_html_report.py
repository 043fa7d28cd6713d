"""``aicc report J --html FILE``: one self-contained page (no network) with the
campaign's charts, every journal value escaped, opened in a real browser (headless
Chromium through Debian's chromedriver): no console error, every chart drawn, a
screenshot kept under the test's temporary directory (its path is printed).

The journal is made in this process: a campaign against a mocked AICC whose answers
and release events carry hostile text, its send times spread over ten minutes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from aicc_async import AICCClient, AutoRate, CreateVoiceNotificationRequest, RetryPolicy, Timeout
from aicc_async.bulk import Campaign, CampaignRow
from aicc_async.callbacks import ReleaseEvent

BASE = "https://aicc.test"
TOKEN_URL = BASE + "/apigovernance/api/oauth/tokenByAkSk"
VOICE_URL = BASE + "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"

#: Text that runs script wherever a value is not escaped (and sets a flag we look for).
HOSTILE = "</script><script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
CHARTS = {"rate", "sent", "states", "outcomes", "release_reasons", "problems", "talk_durations"}
ROWS = 40


def _number(i: int) -> str:
    return f"139{i:08d}"


def make_journal(journal: Path) -> None:
    """40 rows: 30 done (18 answered, 12 not), 6 refused with hostile text, 4 unknown."""
    serials = itertools.count(1000)

    def answer(url: Any, **kwargs: Any) -> CallbackResult:
        i = int(json.loads(kwargs["data"])["called"][3:])
        if i >= 36:
            raise asyncio.TimeoutError
        if i >= 30:
            return CallbackResult(payload={"retCode": "0200017", "retMsg": f"bad {HOSTILE}"})
        return CallbackResult(
            payload={"retCode": "0", "result": {"callSerialNo": str(next(serials))}}
        )

    async def run() -> None:
        with aioresponses() as http:
            http.post(TOKEN_URL, payload={"AccessToken": "tok-123456", "Expires": "600"})
            http.post(VOICE_URL, callback=answer, repeat=True)
            async with (
                Campaign(journal, "voice_notification") as campaign,
                AICCClient(
                    BASE,
                    "key-1",
                    "secret-1",
                    retry=RetryPolicy(max_attempts=1),
                    timeout=Timeout(total=0.5, connect=0.2),
                ) as client,
            ):
                rows = [
                    CampaignRow(
                        key=str(i),
                        request=CreateVoiceNotificationRequest(
                            called=_number(i), voice_content="$Hi$"
                        ),
                    )
                    for i in range(ROWS)
                ]
                await campaign.load(rows)
                await campaign.run(  # rate auto: the journal keeps its rate over time
                    client, callback_url="https://example.test/cb", rate=AutoRate(initial=20.0)
                )
                for n, serial in enumerate(range(1000, 1030)):
                    answered = n < 18
                    body = {
                        "callSerialNo": str(serial),
                        "called": _number(n),
                        "talkDuration": 5 + 17 * n if answered else 0,
                        "releaseReason": "0" if answered else ("20" if n % 2 else HOSTILE),
                    }
                    if answered:
                        body["talkingTime"] = "2026/12/04,10:00:00:000"
                    await campaign.record_outcome(ReleaseEvent.from_body(body))

    asyncio.run(run())
    db = sqlite3.connect(journal)
    try:  # the sends spread over ten minutes, as a real campaign's would be
        db.execute("UPDATE rows SET updated = 1796380000 + 15 * seq")
        db.commit()
    finally:
        db.close()


@pytest.fixture
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Function-scoped: the aioresponses compatibility shim (tests/conftest.py) is.
    path = tmp_path_factory.mktemp("html-report") / "campaign.db"
    make_journal(path)
    return path


@pytest.fixture(scope="module")
def browser() -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium, "install Debian's chromium (.ci/run does)"
    assert driver_path, "install Debian's chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2400",
        # No network at all: a page that needed any would show errors.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_html_report_draws_every_chart_in_chromium(
    tmp_path_factory, journal, aicc, plain_env, browser, capsys
):
    out = tmp_path_factory.mktemp("artifacts") / "report.html"
    done = aicc.run("report", journal, "--html", out, env=plain_env)
    assert done.returncode == 0, done
    assert f"Wrote the report to {out}" in " ".join(done.stderr.split()), done
    page = out.read_text(encoding="utf-8").lower()
    assert "<script src" not in page
    assert "<link " not in page

    browser.get_log("performance")  # drop what came before
    browser.get(out.as_uri())
    browser.set_script_timeout(20)
    drawn = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const want = arguments[0];
        const start = Date.now();
        (function check() {
            const ready = want.every(k => {
                const div = document.getElementById('chart-' + k);
                return div && div.querySelector('svg.main-svg') &&
                       div.querySelectorAll('.trace, .slice').length > 0;
            });
            if (ready || Date.now() - start > 15000) { done(ready); }
            else { setTimeout(check, 50); }
        })();
        """,
        sorted(CHARTS),
    )
    screenshot = out.with_suffix(".png")
    browser.save_screenshot(str(screenshot))
    with capsys.disabled():  # shown in the run's output, also when the test passes
        print(f"\nscreenshot of the HTML report: {screenshot}")
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    # Self-contained: the page itself is the only thing the browser asked for.
    fetched = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            fetched.add(message["params"]["request"]["url"])
    assert {u for u in fetched if not u.startswith(("data:", "blob:"))} == {out.as_uri()}
    assert drawn, f"not every chart was drawn; see {screenshot}"
    shown = {d.get_attribute("id") for d in browser.find_elements(By.CSS_SELECTOR, ".chart")}
    assert shown == {f"chart-{k}" for k in CHARTS}
    assert browser.execute_script("return window.__pwned === undefined")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "bad </script><script>window.__pwned=1</script>" in text  # shown, as text
    assert f"{ROWS} rows" in text
    # The rate over time, read from the journal: a line through its points.
    points = browser.execute_script("return document.getElementById('plot-rate').data[0].y.length")
    assert points >= 2


def test_the_html_report_escapes_every_journal_value(tmp_path, journal, aicc, plain_env):
    out = tmp_path / "r.html"
    done = aicc.run("report", journal, "--html", out, env=plain_env)
    assert done.returncode == 0, done
    page = out.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in page
    assert "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page


@pytest.mark.parametrize("target", ["journal", "other-sqlite"])
def test_the_html_report_never_writes_over_a_journal(tmp_path, journal, aicc, plain_env, target):
    other = tmp_path / "other.db"
    shutil.copy(journal, other)
    path = journal if target == "journal" else other
    before = path.read_bytes()
    done = aicc.run("report", journal, "--html", path, env=plain_env)
    assert done.returncode == 2, done
    assert "will not write" in " ".join(done.stderr.split()), done
    assert path.read_bytes() == before


def test_without_plotly_the_html_option_says_what_to_install(tmp_path, journal, plain_env):
    code = (
        "import sys; sys.modules['plotly'] = None\n"
        "from aicc_async.cli import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "report", str(journal), "--html", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        env=plain_env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'aicc-async[html]'" in " ".join(done.stderr.split())
    assert not (tmp_path / "r.html").exists()


def test_charts_come_only_with_their_data_and_attempts_where_present():
    from aicc_async.bulk.journal import Activity
    from aicc_async.cli.html_report import charts

    bare = {"states": {"pending": 3, "done": 0}, "outcomes": {}, "problems": []}
    assert [c.key for c in charts(bare, Activity())] == ["states"]
    once = {**bare, "attempts": {"1": 10}}  # no redial: no chart of calls per row
    assert [c.key for c in charts(once, Activity())] == ["states"]
    with_attempts = {**bare, "attempts": {"1": 7, "2": 3, "3": "not a count"}}
    (attempts,) = [c for c in charts(with_attempts, Activity()) if c.key == "attempts"]
    assert attempts.points == (("1 call(s)", 7.0), ("2 call(s)", 3.0), ("3 call(s)", 0.0))
