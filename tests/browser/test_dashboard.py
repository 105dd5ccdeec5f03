"""The dashboard in Debian's Chromium against a real API, worker, beat and Redis,
with demo traffic flowing. Tests run in file order on one system."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from common.data import synthetic
from tests.browser.conftest import XSS, System, Tab
from tests.e2e.conftest import API_KEY, launch_api

pytestmark = pytest.mark.browser
CHARTS = ["chart-volume", "chart-latency", "chart-accuracy", "chart-drift", "chart-psi"]
CHARTS_HAVE_DATA = """ids => ids.every(id => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart && chart.data.datasets[0].data.some(v => v !== null && v !== undefined);
})"""


POLICY_DECISIONS = {"not_evaluated", "healthy", "watching", "waiting", "busy",
                    "retrain"}  # fmt: skip
# Every word of the cells drawn on one line: a word split across two lines reads
# as two (what overflow-wrap: anywhere did to the jobs table).
WORDS_SPLIT_ACROSS_LINES = """selector => {
  const split = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (tops.size > 1) split.push(match[0]);
      }
    }
  }
  return split;
}"""
# Tick labels of the time axes, as drawn: each pair of neighbours apart.
OVERLAPPING_TICKS = """ids => ids.flatMap(id => {
  const chart = Chart.getChart(document.getElementById(id));
  const boxes = chart.scales.x.getLabelItems().map(item => {
    chart.ctx.font = item.font.string;
    const width = chart.ctx.measureText(String(item.label)).width;
    const x = item.options.translation[0];
    return { id, label: item.label, rotation: item.options.rotation,
             left: x - width / 2, right: x + width / 2 };
  });
  return boxes.slice(1)
    .filter((box, i) => box.rotation !== 0 || box.left < boxes[i].right);
})"""
TIME_CHARTS = ["chart-volume", "chart-latency", "chart-accuracy", "chart-drift"]
# Values a line chart has but draws neither as part of a line nor as a dot.
HIDDEN_VALUES = """ids => ids.flatMap(id => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart.data.datasets.flatMap((set, k) => set.data.flatMap((v, i) => {
    const has = j => set.data[j] !== null && set.data[j] !== undefined;
    const alone = has(i) && !has(i - 1) && !has(i + 1);
    const radius = chart.getDatasetMeta(k).data[i].options.radius;
    return alone && !(radius > 0) ? [`${id} ${set.label} #${i}`] : [];
  }));
})"""
PAGES = {  # each page, and what shows that its data is drawn
    "overview": "#cards .card", "models": "#models-table tbody tr",
    "jobs": "#jobs-table tbody tr", "alerts": "#alert-lists > *",
    "rollouts": "#rollouts-table",
    "try": "#try-fields .field", "demo": "#demo-reset",
}  # fmt: skip


def _give_key(tab: Tab) -> None:
    tab.page.fill("#key-input", API_KEY)
    tab.page.click("#key-form button[value=ok]")


def test_overview_shows_cards_and_live_charts_after_traffic(tab: Tab) -> None:
    page = tab.page
    page.goto("/")
    page.wait_for_function(CHARTS_HAVE_DATA, arg=CHARTS, timeout=60_000)
    expect(page.locator("#cards .card")).to_have_count(7)
    expect(page.locator("#serving")).to_contain_text("serving v1")
    expect(page.locator("#cards")).to_contain_text("95% CI")
    volume = ("JSON.stringify(Chart.getChart(document.getElementById('chart-volume'))"
              ".data.datasets[0].data)")  # fmt: skip
    before = page.evaluate(volume)
    page.wait_for_function(
        f"before => {volume} !== before", arg=before, timeout=30_000
    )  # the current minute's traffic is redrawn without a reload
    # every value is drawn: one between gaps (a minute of traffic among quiet ones)
    # has no line to either side, so it gets a dot (it showed nothing before)
    hidden = page.evaluate(HIDDEN_VALUES, TIME_CHARTS)
    assert hidden == [], hidden
    policy = page.locator("#policy")
    expect(policy).to_contain_text("Retraining policy:")  # its decision and why
    assert policy.get_attribute("data-decision") in POLICY_DECISIONS
    tab.screenshot("overview")
    assert tab.errors == []


def test_tester_answers_and_shows_the_field_at_fault(tab: Tab) -> None:
    page = tab.page
    page.goto("/#try")
    expect(page.locator("#try-fields .field")).to_have_count(8)
    assert '"features"' in page.input_value("#try-json")
    page.click("#try-form button[type=submit]")
    expect(page.locator("#try-status")).to_have_text("HTTP 200")
    expect(page.locator("#try-response")).to_contain_text('"prediction"')
    expect(page.locator("#try-latency")).to_contain_text("ms")
    page.fill("[data-field=age] input", "forty")
    page.click("#try-form button[type=submit]")
    expect(page.locator("#try-status")).to_have_text("HTTP 400")
    expect(page.locator("#try-problems li").first).to_contain_text("age")
    expect(page.locator(".field[data-field=age]")).to_have_class(re.compile("invalid"))
    tab.screenshot("try-it")
    # the browser reports the 400 it was asked to provoke; nothing else
    assert [e for e in tab.errors if "status of 400" not in e] == []


def test_retrain_shows_progress_and_then_the_new_version(tab: Tab) -> None:
    page = tab.page
    page.goto("/#jobs")
    page.click("#retrain")
    page.click("#confirm-ok")
    _give_key(tab)
    expect(page.locator("#notice")).to_contain_text("Retrain queued")
    page.wait_for_function(
        """() => [...document.querySelectorAll('#jobs-table progress')]
                 .some(p => p.value > 0 && p.value < 100)""",
        timeout=60_000,
    )
    tab.screenshot("jobs")
    newest = page.locator("#jobs-table tbody tr").first
    expect(newest).to_have_class(re.compile("succeeded"), timeout=180_000)
    expect(newest.locator("a", has_text="Flower")).to_have_attribute(
        "href", re.compile(r"^http://.+/task/")
    )
    page.click("#nav a[data-page=models]")
    champion = page.locator("#models-table tr.champion")
    expect(champion).to_have_attribute("data-version", "2")
    expect(champion).to_contain_text("promoted: F1")
    expect(page.locator("#serving")).to_contain_text("serving v2")
    tab.screenshot("models")
    assert tab.errors == []


def test_a_drift_scenario_raises_an_alert_that_can_be_acknowledged(tab: Tab) -> None:
    page = tab.page
    page.goto("/#demo")
    expect(page.locator("#demo-scenario")).to_have_text("baseline")
    page.select_option("#drift-scenario", "regime_change")
    page.click("#drift-form button[type=submit]")
    page.click("#confirm-ok")
    _give_key(tab)
    expect(page.locator("#demo-scenario")).to_have_text("regime_change")
    tab.screenshot("demo")
    # a notification while the page is open
    expect(page.locator(".toast", has_text="dataset-drift")).to_be_visible(
        timeout=60_000
    )
    page.click("#nav a[data-page=alerts]")
    open_alert = page.locator("[data-state=open] li.alert", has_text="dataset-drift")
    expect(open_alert).to_contain_text("critical")
    open_alert.get_by_role("button", name="Acknowledge").click()  # key kept
    expect(
        page.locator("[data-state=acknowledged] li.alert", has_text="dataset-drift")
    ).to_be_visible()
    expect(page.locator("#alert-badge")).to_be_visible()
    tab.screenshot("alerts")
    assert tab.errors == []


def test_markup_in_alert_text_is_shown_as_text(tab: Tab) -> None:
    page = tab.page
    page.goto("/#alerts")
    shown = page.locator("li.alert", has_text=XSS).first
    expect(shown).to_be_visible(timeout=30_000)
    assert XSS in shown.text_content()
    assert page.locator("#alert-lists img, #toasts img").count() == 0
    assert page.evaluate("window.__xss") is None
    assert tab.errors == []


def test_batch_scoring_upload_then_rollback(tab: Tab, tmp_path: Path) -> None:
    page = tab.page
    rows = synthetic.generate("baseline", 50, 5).drop(columns=synthetic.TARGET)
    upload = tmp_path / "customers.csv"
    rows.to_csv(upload, index=False)
    page.goto("/#jobs")
    page.set_input_files("#score-file", str(upload))
    page.click("#score-form button[type=submit]")
    _give_key(tab)
    expect(page.locator("#notice")).to_contain_text("Scoring customers.csv")
    newest = page.locator("#jobs-table tbody tr").first
    expect(newest).to_contain_text("batch_score")
    expect(newest).to_have_class(re.compile("succeeded"), timeout=60_000)
    with page.expect_download() as downloading:  # fetched with the session's key
        newest.get_by_role("button", name="download").click()
    scores = Path(downloading.value.path()).read_text()
    assert downloading.value.suggested_filename.startswith("scores-")
    assert len(scores.strip().splitlines()) == 1 + 50
    page.click("#nav a[data-page=models]")
    page.click("#rollback")
    expect(page.locator("#confirm-text")).to_contain_text("Roll back")
    page.click("#confirm-ok")  # the key is kept for the session
    expect(page.locator("#models-table tr.champion")).to_have_attribute(
        "data-version", "1"
    )
    expect(page.locator("#serving")).to_contain_text("serving v1", timeout=15_000)
    # Promote a version from its row, then roll back to where the test began.
    row = page.locator("#models-table tr[data-version='2']")
    row.get_by_role("button", name="Promote").click()
    expect(page.locator("#confirm-text")).to_contain_text("Promote version 2")
    page.click("#confirm-ok")
    expect(page.locator("#models-table tr.champion")).to_have_attribute(
        "data-version", "2"
    )
    expect(page.locator("#serving")).to_contain_text("serving v2", timeout=15_000)
    page.click("#rollback")
    page.click("#confirm-ok")
    expect(page.locator("#serving")).to_contain_text("serving v1", timeout=15_000)
    assert tab.errors == []


def test_a_shadow_rollout_shows_both_arms_and_its_verdict_then_is_aborted(
    tab: Tab,
) -> None:
    page = tab.page
    page.goto("/#rollouts")
    form = page.locator("#rollout-form")
    expect(form).to_be_visible()
    form.locator("select[name=version]").select_option("2")
    form.locator("select[name=mode]").select_option("shadow")
    # never decided under the test: no label count reached, no drop too large
    form.locator("input[name=min_labels]").fill("1000000")
    form.locator("input[name=max_accuracy_drop]").fill("1")
    form.get_by_role("button", name="Start rollout").click()
    _give_key(tab)
    expect(page.locator("#notice")).to_contain_text("Started a shadow rollout")
    arms = page.locator("#rollout-arms tbody tr")
    expect(arms).to_have_count(2)
    shadow = page.locator("#rollout-arms tr[data-arm='challenger (shadow)']")
    expect(shadow.locator("td").nth(2)).not_to_have_text("0", timeout=30_000)
    expect(page.locator("#rollout-verdict")).to_have_attribute(
        "data-decision", "continue"
    )
    expect(page.locator("#rollout-difference")).to_contain_text(
        "Agreement on the same rows", timeout=30_000
    )
    tab.screenshot("rollouts")
    page.click("#rollout-abort")
    page.click("#confirm-ok")
    expect(page.locator("#rollouts-table tbody tr").first).to_contain_text("aborted")
    expect(form).to_be_visible()
    expect(page.locator("#serving")).to_contain_text("serving v1")
    assert tab.errors == []


def test_the_jobs_table_reads_whole_words_at_1280_px(tab: Tab) -> None:
    page = tab.page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/#jobs")
    expect(page.locator("#jobs-table tbody tr")).not_to_have_count(0)
    expect(page.locator("#jobs-table tbody tr").first).to_contain_text("batch_score")
    assert page.evaluate(WORDS_SPLIT_ACROSS_LINES, "#jobs-table td") == []
    tab.screenshot("jobs-1280")
    page.goto("/#models")
    expect(page.locator("#models-table tbody tr").first).to_be_visible()
    assert page.evaluate(WORDS_SPLIT_ACROSS_LINES, "#models-table td") == []
    page.goto("/")
    page.wait_for_function(CHARTS_HAVE_DATA, arg=CHARTS, timeout=30_000)
    assert page.evaluate(OVERLAPPING_TICKS, TIME_CHARTS) == []
    assert tab.errors == []


# The page's width when it is wider than the window (it scrolls sideways), else none.
SIDEWAYS_SCROLL = """() => {
  const page = document.documentElement;
  const [wide, seen] = [page.scrollWidth, page.clientWidth];
  return wide > seen ? [wide, seen] : [];
}"""
CARDS_OVERFLOWING = """() => [...document.querySelectorAll('#cards .card')]
  .filter((card) => card.scrollWidth > card.clientWidth)
  .map((card) => card.textContent)"""


def test_no_page_scrolls_sideways_on_a_390_px_phone(tab: Tab) -> None:
    page = tab.page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    page.wait_for_function(CHARTS_HAVE_DATA, arg=CHARTS, timeout=30_000)
    for name, drawn in PAGES.items():
        page.goto(f"/#{name}")
        expect(page.locator(f"#page-{name}")).to_be_visible()
        expect(page.locator(drawn).first).to_be_visible()
        assert page.evaluate(SIDEWAYS_SCROLL) == [], name
    page.goto("/")
    page.wait_for_function(CHARTS_HAVE_DATA, arg=CHARTS, timeout=30_000)
    assert page.evaluate(OVERLAPPING_TICKS, TIME_CHARTS) == []
    tab.screenshot("overview-390")
    assert tab.errors == []


def test_offline_banner_keeps_the_last_data_and_recovers(
    tab: Tab, system: System
) -> None:
    page = tab.page
    page.goto("/#models")
    expect(page.locator("#models-table tbody tr")).to_have_count(2)
    page.click("#nav a[data-page=overview]")
    page.wait_for_function(CHARTS_HAVE_DATA, arg=CHARTS, timeout=30_000)
    system.api.stop()
    banner = page.locator("#offline")
    expect(banner).to_be_visible(timeout=15_000)
    expect(banner).to_contain_text("The API cannot be reached")
    expect(banner).to_contain_text("Showing the data kept in this browser from")
    expect(page.locator("#cards .card")).to_have_count(7)
    page.click("#nav a[data-page=models]")  # rendered from the browser's copy
    expect(page.locator("#models-table tbody tr")).to_have_count(2)
    tab.screenshot("offline")
    system.restart_api()
    expect(banner).to_be_hidden(timeout=30_000)
    expect(page.locator("#serving")).to_contain_text("serving v1")
    # the calls made while the API was down: refused, or reset if one was in flight
    offline = ("ERR_CONNECTION_REFUSED", "ERR_CONNECTION_RESET")
    assert [e for e in tab.errors if not any(o in e for o in offline)] == []


def test_an_api_that_guards_its_reads_gets_the_key_once_then_shows_everything(
    tab: Tab, system: System
) -> None:
    guarded = launch_api(system.settings, system.redis_url, system.log_dir,
                         MODELOPS_READ_AUTH="true", **system.env)  # fmt: skip
    try:
        page = tab.page
        page.goto(f"{guarded.url}/")
        expect(page.locator("#key-dialog")).to_be_visible()  # the first read got 401
        expect(page.locator("#serving")).not_to_contain_text("serving v")
        _give_key(tab)
        expect(page.locator("#serving")).to_contain_text("serving v", timeout=15_000)
        page.wait_for_function(CHARTS_HAVE_DATA, arg=CHARTS, timeout=30_000)
        page.click("#nav a[data-page=jobs]")
        expect(page.locator("#jobs-table tbody tr").first).to_be_visible()
        expect(page.locator("#key-dialog")).to_be_hidden()  # asked once, kept
        unauthorized = "status of 401"
        assert [e for e in tab.errors if unauthorized not in e] == []
    finally:
        guarded.stop()


def _regressor_files(folder: Path) -> tuple[Path, Path]:
    """A user's own pipeline (predicting income) and its reference data."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = synthetic.generate(rows=1000, seed=3)
    features = ["age", "tenure_months", "plan", "region"]
    prepare = ColumnTransformer([
        ("numbers", "passthrough", ["age", "tenure_months"]),
        ("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
    ])  # fmt: skip
    # A model type as long as users' ("Pipeline/RandomForestRegressor") for the
    # cards to hold.
    forest = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0)
    pipeline = Pipeline([("prepare", prepare), ("model", forest)])
    pipeline.fit(frame[features], frame["income"])
    artifact, reference = folder / "income.skops", folder / "income.csv"
    sio.dump(pipeline, artifact)
    frame[[*features, "income"]].to_csv(reference, index=False)
    return artifact, reference


def test_a_registered_model_gets_its_own_pages_and_the_switcher_keeps_it(
    tab: Tab, tmp_path: Path
) -> None:
    page = tab.page
    artifact, reference = _regressor_files(tmp_path)
    page.goto("/#models")
    page.click("#register summary")
    form = page.locator("#register-form")
    form.locator("input[name=name]").fill("income")
    form.locator("input[name=artifact]").set_input_files(str(artifact))
    form.locator("input[name=reference]").set_input_files(str(reference))
    form.locator("input[name=target]").fill("income")
    form.get_by_role("button", name="Register").click()
    _give_key(tab)
    expect(page.locator("#notice")).to_contain_text(
        "Registered income version 1 (regression, champion)", timeout=60_000
    )
    assert "model=income" in page.url  # the URL carries the model
    expect(page.locator("#versions-of")).to_have_text("income")
    # Compiled on registration, and the compiled model matched scikit-learn.
    expect(page.locator("#models-table tr[data-version='1'] td.runtime")).to_have_text(
        "ONNX Runtime"
    )
    expect(page.locator("#all-models-table tr[data-model]")).to_have_count(2)
    expect(page.locator("#model-switch")).to_have_value("income")
    page.click("#nav a[data-page=overview]")
    expect(page.locator("#cards")).to_contain_text("MAE")  # a regressor's card
    expect(page.locator("#cards")).to_contain_text("RandomForestRegressor")
    # Every card holds its text, the long model type included.
    assert page.evaluate(CARDS_OVERFLOWING) == []
    page.set_viewport_size({"width": 390, "height": 844})  # and on a phone
    expect(page.locator("#serving")).to_contain_text("RandomForestRegressor")
    # The charts take the new width a frame or two later (Chart.js watches their
    # box): wait for the page to fit, failing if it never does.
    page.wait_for_function(f"() => ({SIDEWAYS_SCROLL})().length === 0", timeout=10_000)
    assert page.evaluate(CARDS_OVERFLOWING) == []
    page.set_viewport_size({"width": 1400, "height": 900})
    page.click("#nav a[data-page=try]")
    expect(page.locator("#try-path")).to_have_text("POST /models/income/predict")
    expect(page.locator("#try-fields .field")).to_have_count(4)
    page.click("#try-form button[type=submit]")
    # The first answer loads the new model into this API process: slow on a busy box.
    expect(page.locator("#try-status")).to_have_text("HTTP 200", timeout=30_000)
    expect(page.locator("#try-response")).to_contain_text('"model": "income"')
    page.reload()  # a reload keeps the model
    expect(page.locator("#try-fields .field")).to_have_count(4)
    page.select_option("#model-switch", "default")
    expect(page.locator("#try-fields .field")).to_have_count(8)
    assert "model=" not in page.url
    tab.screenshot("models-1280")
    assert tab.errors == []


def test_demo_reset_shows_progress_and_leaves_one_fresh_version(tab: Tab) -> None:
    """Last in the module: it clears what the others made."""
    page = tab.page
    page.goto("/#demo")
    page.click("#demo-reset")
    expect(page.locator("#confirm-text")).to_contain_text("Reset the demo?")
    page.click("#confirm-ok")
    _give_key(tab)
    expect(page.locator("#reset-progress")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text(
        "The demo is reset.", timeout=120_000
    )
    page.click("#nav a[data-page=models]")
    expect(page.locator("#models-table tbody tr")).to_have_count(1, timeout=15_000)
    expect(page.locator("#models-table tr.champion")).to_have_attribute(
        "data-version", "1"
    )
    # The user's model is not the demo's: it is still there, with its version.
    income = page.locator("#all-models-table tr[data-model=income]")
    expect(income).to_contain_text("regression")
    expect(income.locator("td").nth(2)).to_have_text("v1")
    assert tab.errors == []
