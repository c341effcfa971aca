"""The dashboard in headless Chromium: upload a file, launch a tiny job, watch it succeed with its loss curve,
then chat with the result beside the base model in the playground."""

import json
import shutil

import pytest

from tests.jobs.conftest import wait_for

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not shutil.which("chromium") or not shutil.which(CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromedriver are not installed")
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_upload_launch_and_watch_a_job(service, browser, pizza_data, tiny_model_dir):
    from selenium.webdriver.common.by import By

    browser.get(service.url + "/")
    key = browser.find_element(By.ID, "key")
    key.send_keys(service.keys["alpha"])
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
    browser.find_element(By.ID, "train-file").send_keys(str(pizza_data[0]))
    model = browser.find_element(By.ID, "model")
    model.clear()
    model.send_keys(str(tiny_model_dir))
    browser.find_element(By.ID, "suffix").send_keys("web")
    browser.find_element(By.ID, "batch-size").clear()
    browser.find_element(By.ID, "batch-size").send_keys("2")
    browser.find_element(By.ID, "hone").send_keys(json.dumps({"train.max_steps": 5, "train.save_every": 2,
                                                              "train.lr": 5e-3, "data.max_length": 384}))
    browser.find_element(By.ID, "launch-button").click()
    launched = wait_for(lambda: browser.find_element(By.ID, "launch-result").text.startswith("launched ") and
                        browser.find_element(By.ID, "launch-result").text, timeout=30, what="the launch")
    job_id = launched.split()[1]
    assert service.store.get_job(None, job_id)["suffix"] == "web"
    service.start_worker()
    wait_for(lambda: browser.find_element(By.ID, "job-status").text == "succeeded", what="the job to succeed")
    assert browser.find_element(By.ID, "job-id").text == job_id
    results = json.loads(wait_for(lambda: browser.find_element(By.ID, "job-results").text, timeout=10,
                                  what="the results"))
    assert results["steps"] == 5 and results["train_loss"] > 0
    assert browser.find_element(By.ID, "loss-curve").get_attribute("data-points") == "5"
    points = browser.find_element(By.ID, "train-line").get_attribute("points").split()
    assert len(points) == 5
    rows = browser.find_elements(By.CSS_SELECTOR, "#checkpoints tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == ["5", "4", "2"]
    jobs_rows = browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
    assert [r.get_attribute("data-id") for r in jobs_rows] == [job_id]
    assert "ft:" in jobs_rows[0].text
    file_rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "#files tbody tr") if "train.jsonl" in r.text]
    assert len(file_rows) == 1 and "40 valid of 40" in file_rows[0].text
    file_rows[0].click()
    wait_for(lambda: '"valid": 40' in browser.find_element(By.ID, "file-report").text, timeout=10,
             what="the file report")

    order = json.loads(pizza_data[1].read_text().splitlines()[0])["messages"][1]["content"]
    _chat_in_the_playground(service, browser, service.store.get_job(None, job_id)["fine_tuned_model"],
                            str(tiny_model_dir), order)
    _open_the_eval_report(service, browser, job_id)


def _open_the_eval_report(service, browser, job_id: str):
    """After `hone report` on the job's run, the job's "eval report" link opens that page."""
    from selenium.webdriver.common.by import By

    from hone.evaluate.report import write_report

    link = browser.find_element(By.ID, "job-report")
    assert not link.is_displayed()
    write_report(service.data_dir / "runs" / job_id, progress=False, log=lambda *a: None)
    wait_for(link.is_displayed, timeout=10, what="the report link")
    link.click()
    wait_for(lambda: len(browser.window_handles) == 2, timeout=10, what="the report page")
    browser.switch_to.window(browser.window_handles[1])
    images = wait_for(lambda: browser.find_elements(By.TAG_NAME, "img"), timeout=10, what="the report's figures")
    assert all(browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images)


def _chat_in_the_playground(service, browser, tuned: str, base: str, prompt: str):
    """The playground sends one prompt to the base and the tuned model; each answer is the API's own."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    wait_for(lambda: tuned in [o.get_attribute("value") for o in
                               browser.find_elements(By.CSS_SELECTOR, "#tuned-model option")],
             timeout=10, what="the tuned model in the playground")
    assert browser.find_element(By.ID, "base-model").text == base
    Select(browser.find_element(By.ID, "tuned-model")).select_by_value(tuned)
    browser.find_element(By.ID, "prompt").send_keys(prompt)
    browser.find_element(By.ID, "send").click()
    wait_for(lambda: browser.find_element(By.ID, "playground").get_attribute("data-state") == "answered",
             timeout=60, what="both answers")
    answers = [browser.find_element(By.ID, i).get_attribute("textContent").strip()
               for i in ("base-answer", "tuned-answer")]
    client = service.openai()
    expected = [client.chat.completions.create(model=m, messages=[{"role": "user", "content": prompt}], temperature=0,
                                               max_tokens=128).choices[0].message.content.strip() or "(an empty answer)"
                for m in (base, tuned)]
    assert answers == expected, answers  # a tiny model may end at once: the page says so
    assert not any(a.startswith("error:") for a in answers)
