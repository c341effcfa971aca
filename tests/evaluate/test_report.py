"""`hone report` renders what it claims, in a real headless Chromium; `hone compare` and the cache."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, tiny_model_dir):
    """A tiny trained run with eval.file, 2 few-shot examples and the forgetting suite, and its report."""
    from hone.api import train
    from hone.evaluate.report import write_report
    from hone.examples import pizza

    root = tmp_path_factory.mktemp("report")
    env = pytest.MonkeyPatch()
    env.setenv("HONE_HOME", str(root / "home"))  # also seen by the CLI subprocesses below
    train_path, heldout = pizza.write_dataset(root / "data", train=40, heldout=6)
    result = train(None, [f"model={tiny_model_dir}", f"data.train={train_path}", f"eval.file={heldout}",
                          f"output_dir={root}", "name=r", "train.max_steps=4", "train.eval_every=2",
                          "train.lr=5e-3", "train.threads=1", "eval.metric=json", "eval.max_new_tokens=12",
                          "eval.shots=2", "eval.instruction=Convert the pizza order to JSON.",
                          "forgetting.enabled=true", "forgetting.max_new_tokens=4", "data.max_length=384"],
                   progress=False, log=lambda *a: None)
    said = []
    page = write_report(result.run_dir, progress=False, log=said.append)
    yield result, page, said
    env.undo()


def test_report_files_and_contents(tuned_run):
    result, page, said = tuned_run
    assert said and all(s.startswith("scoring base") for s in said)  # tuned came from train's cached evaluation
    assert sorted(p.name for p in page.parent.iterdir()) == ["contenders.png", "forgetting.png", "index.html", "loss.png"]
    html = page.read_text()
    for marker in ('id="loss-curves"', 'id="contenders"', 'id="forgetting-table"', 'id="wins"', 'id="losses"',
                   "base, zero-shot", "base, best prompt", "tuned", "status: <b>succeeded</b>"):
        assert marker in html, marker
    evaluation = json.loads((result.run_dir / "evaluation.json").read_text())
    assert list(evaluation["results"]) == ["base", "prompted", "tuned"]
    for contender in evaluation["results"].values():
        assert len(contender["predictions"]) == 6 and contender["metrics"]["perplexity"] > 1


def test_a_second_report_is_served_from_the_cache(tuned_run):
    from hone.evaluate.report import write_report

    result, _, _ = tuned_run
    said = []
    started = time.perf_counter()
    write_report(result.run_dir, progress=False, log=said.append)
    assert said == [] and time.perf_counter() - started < 10


def test_report_cli_writes_the_page(tuned_run, tmp_path):
    result, _, _ = tuned_run
    proc = subprocess.run([sys.executable, "-m", "hone", "report", str(result.run_dir), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"report: {tmp_path / 'r' / 'index.html'}" in proc.stdout
    assert 'id="contenders"' in (tmp_path / "r" / "index.html").read_text()


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium/chromedriver not installed "
                    "(apt-get install chromium chromium-driver)")
def test_report_renders_in_headless_chromium(tuned_run, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    _, page, _ = tuned_run
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(page.as_uri())
        assert driver.find_element(By.ID, "status").text.startswith("status: succeeded")
        rows = driver.find_elements(By.CSS_SELECTOR, "#contenders tr")
        assert [r.find_element(By.TAG_NAME, "th").text for r in rows[1:]] == ["base, zero-shot", "base, best prompt", "tuned"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#forgetting-table tr")) == 5
        images = driver.find_elements(By.CSS_SELECTOR, "img.plot")
        assert len(images) == 3
        for image in images:
            width = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
            assert width and width > 100, image.get_attribute("id")
        diffs = driver.find_elements(By.CSS_SELECTOR, "tr.diff")
        assert all(len(d.find_elements(By.TAG_NAME, "td")) == 5 for d in diffs)
    finally:
        driver.quit()


def test_compare_cli_puts_runs_side_by_side(tuned_run):
    result, _, _ = tuned_run
    other = result.run_dir.parent / "r2"
    shutil.copytree(result.run_dir, other)
    out = result.run_dir.parent / "cmp" / "compare.html"
    proc = subprocess.run([sys.executable, "-m", "hone", "compare", str(result.run_dir), str(other), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 4 and "eval_field_accuracy" in table[0] and "| r |" in table[2] and "| r2 |" in table[3]
    assert 'id="runs"' in out.read_text() and out.with_name("compare-loss.png").stat().st_size > 1000


def test_eval_cli_scores_contenders_and_reuses_the_cache(tuned_run):
    result, _, _ = tuned_run
    heldout = json.loads((result.run_dir / "evaluation.json").read_text())["file"]
    args = [sys.executable, "-m", "hone", "eval", heldout, "--adapter", str(result.run_dir), "--metric", "json",
            "--max-new-tokens", "12", "--shots", "2", "--instruction", "Convert the pizza order to JSON."]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "scoring" not in proc.stdout  # every contender came from the run's cache
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| base") or line.startswith("| tuned")]
    assert len(rows) == 3 and "perplexity" in proc.stdout


def test_diffs_put_the_biggest_wins_and_losses_first(tuned_run, tmp_path):
    from hone.evaluate.report import example_diffs, write_report

    result, _, _ = tuned_run
    run = shutil.copytree(result.run_dir, tmp_path / "copy")  # the report rewrites the run's evaluation.json
    comparison = json.loads((run / "evaluation.json").read_text())
    base_scores = [0.2, 0.5, 0.9, 0.4, 0.6, 0.3]
    tuned_scores = [1.0, 0.5, 0.1, 0.7, 0.4, 0.3]  # deltas +.8, 0, -.8, +.3, -.2, 0
    for name, scores in (("prompted", base_scores), ("tuned", tuned_scores)):
        comparison["results"][name]["scores"] = [{"field_accuracy": s} for s in scores]
        comparison["results"][name]["predictions"] = [f"{name}-{i}" for i in range(6)]
    rows = example_diffs(comparison)
    assert [round(r["delta"], 2) for r in rows] == [0.8, 0.3, 0.0, 0.0, -0.2, -0.8]
    page = write_report(run, comparison=comparison).read_text()
    wins, losses = page.split('id="wins"')[1].split('id="losses"')
    assert wins.index("tuned-0") < wins.index("tuned-3") and "tuned-2" not in wins
    assert losses.index("tuned-2") < losses.index("tuned-4") and "tuned-0" not in losses
    assert "prompted-2" in losses and "2 better, 2 worse, 2 unchanged" in page
