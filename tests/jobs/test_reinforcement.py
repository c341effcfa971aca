"""Reinforcement jobs: OpenAI's graders mapped onto hone's, bad graders refused by field, a tiny job run."""

import json

import pytest

from hone.jobs.graders import hone_grader, write_sources
from hone.rewards import grade_outputs
from hone.rewards.spec import load_spec
from hone.errors import RequestError
from hone.serve.errors import from_exception
from tests.jobs.conftest import upload, wait_for

ITEM = {"messages": [{"role": "user", "content": "Capital of France?"}], "reference_answer": "Paris",
        "answers": ["Paris", "paris"], "where": "train.jsonl:1"}


def _scores(spec, outputs, tmp_path, item=ITEM):
    """The scores hone's grader, mapped from OpenAI's `spec`, gives each output against ITEM."""
    hone, sources = hone_grader(spec, param="grader", run_dir=tmp_path, allow_python=True)
    write_sources(sources)
    return [g.score for g in grade_outputs(load_spec(hone), outputs, [item] * len(outputs))]


@pytest.mark.parametrize("spec, outputs, expected", [
    ({"type": "string_check", "name": "eq", "input": "{{ sample.output_text }}",
      "reference": "{{ item.reference_answer }}", "operation": "eq"}, ["Paris", "paris", "Lyon"], [1, 0, 0]),
    ({"type": "string_check", "input": "{{sample.output_text}}", "reference": "{{item.answers[0]}}",
      "operation": "ne"}, ["Paris", "Lyon"], [0, 1]),
    ({"type": "string_check", "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}",
      "operation": "like"}, ["It is Paris.", "it is paris"], [1, 0]),
    ({"type": "string_check", "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}",
      "operation": "ilike"}, ["it is PARIS", "Lyon"], [1, 0]),
    ({"type": "string_check", "input": "{{sample.output_json.city}}", "reference": "{{item.answers.1}}",
      "operation": "eq"}, ['{"city": "paris"}', '{"city": "Paris"}'], [1, 0]),
])
def test_string_check_maps_each_operation_and_template(spec, outputs, expected, tmp_path):
    assert _scores(spec, outputs, tmp_path) == expected


def test_text_similarity_maps_its_metrics(tmp_path):
    spec = {"type": "text_similarity", "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}",
            "evaluation_metric": "fuzzy_match", "pass_threshold": 0.5}
    assert _scores(spec, ["Paris", "Pari", "xyz"], tmp_path) == pytest.approx([1.0, 8 / 9, 0.0])
    rouge = {**spec, "evaluation_metric": "rouge_l", "reference": "the capital is Paris"}
    assert _scores(rouge, ["the capital is Paris", "Paris is the capital"], tmp_path) == pytest.approx([1.0, 0.5])


def test_python_source_is_saved_in_the_run_and_graded_in_the_sandbox(tmp_path):
    source = ("def grade(sample, item):\n"
              "    return 1.0 if sample['output_text'].lower() == item['reference_answer'].lower() else 0.25\n")
    spec = {"type": "python", "name": "my grader", "source": source}
    with pytest.raises(RequestError) as off:
        hone_grader(spec, param="g", run_dir=tmp_path / "run")
    error = from_exception(off.value)
    assert error.status == 400 and "--allow-python-graders" in error.message and error.param == "g.type"
    hone, sources = hone_grader(spec, param="g", run_dir=tmp_path / "run", allow_python=True)
    [(path, code)] = sources.items()
    assert path == tmp_path / "run" / "graders" / "my_grader_0.py" and code == source
    assert hone == {"type": "python", "name": "my grader", "function": f"{path}:grade", "sandbox": True}
    assert not path.exists()  # written only once the whole job request is valid
    assert _scores({"type": "python", "source": source}, ["PARIS", "Lyon"], tmp_path) == [1.0, 0.25]


def test_score_and_label_model_become_hone_judges(tmp_path, tiny_model_dir):
    from hone.rewards import build_grader

    messages = [{"role": "developer", "content": "Grade the answer."},
                {"type": "message", "role": "user",
                 "content": {"type": "input_text", "text": "Q: {{item.messages[0].content}} A: {{sample.output_text}}"}}]
    score, _ = hone_grader({"type": "score_model", "model": str(tiny_model_dir), "input": messages,
                            "sampling_params": {"max_completions_tokens": 5}}, param="g", run_dir=tmp_path)
    judge = build_grader(load_spec(score))
    assert judge._messages({"output_text": "Paris"}, ITEM) == [
        {"role": "system", "content": "Grade the answer."},
        {"role": "user", "content": "Q: Capital of France? A: Paris"}]
    assert judge.config.max_new_tokens == 5 and judge.config.model == str(tiny_model_dir)
    assert judge.parse("0.75").score == 0.75  # OpenAI's default range [0, 1]
    label, _ = hone_grader({"type": "label_model", "input": messages, "labels": ["right", "wrong"],
                            "passing_labels": ["right"]}, param="g", run_dir=tmp_path)
    labeller = build_grader(load_spec(label))
    assert [labeller.parse(a).score for a in ("right", "It is wrong")] == [1.0, 0.0]
    grades = grade_outputs(load_spec(score), ["Paris"], [ITEM])  # the tiny judge really answers
    assert len(grades) == 1 and 0.0 <= grades[0].score <= 1.0


def test_multi_combines_mapped_graders(tmp_path):
    spec = {"type": "multi", "graders": {
        "exact": {"type": "string_check", "input": "{{sample.output_text}}",
                  "reference": "{{item.reference_answer}}", "operation": "eq"},
        "close": {"type": "text_similarity", "input": "{{sample.output_text}}",
                  "reference": "{{item.reference_answer}}", "evaluation_metric": "fuzzy_match"},
        "code": {"type": "python", "source": "def grade(sample, item):\n    return 0.5\n"}},
        "calculate_output": "0.5 * exact + 0.25 * close + 0.5 * code"}
    assert _scores(spec, ["Paris", "xyz"], tmp_path) == pytest.approx([1.0, 0.25])


@pytest.mark.parametrize("spec, param", [
    ("eq", "g"),
    ({"type": "endpoint"}, "g.type"),
    ({"type": "string_check", "input": "{{sample.output_text}}", "reference": "x", "operation": "equals"},
     "g.operation"),
    ({"type": "string_check", "input": "{{ output_text }}", "reference": "x", "operation": "eq"}, "g.input"),
    ({"type": "text_similarity", "input": "a", "reference": "b", "evaluation_metric": "meteor"},
     "g.evaluation_metric"),
    ({"type": "python", "source": "def grade(sample, item):\n    return 1\n", "image_tag": "2025"}, "g.image_tag"),
    ({"type": "python", "source": "def score(sample, item): return 1"}, "g.source"),
    ({"type": "python", "source": "def grade(:"}, "g.source"),
    ({"type": "score_model", "model": "gpt-4o", "input": [{"role": "user", "content": "x"}]}, "g.model"),
    ({"type": "score_model", "input": [{"role": "user", "content": "x"}], "sampling_params": {"temperature": 1}},
     "g.sampling_params.temperature"),
    ({"type": "score_model", "input": [{"role": "user", "content": "x"}], "pass_threshold": 0.5}, "g.pass_threshold"),
    ({"type": "label_model", "input": [{"role": "user", "content": {"type": "input_image", "image_url": "x"}}],
      "labels": ["a", "b"], "passing_labels": ["a"]}, "g.input[0].content"),
    ({"type": "label_model", "input": [{"role": "user", "content": "x"}], "labels": ["a", "b"],
      "passing_labels": ["c"]}, "g"),  # a check across fields: the grader, whose message names them
    ({"type": "multi", "graders": {"a": {"type": "string_check", "operation": "sometimes", "input": "x",
                                         "reference": "y"}}, "calculate_output": "a"}, "g.graders.a.operation"),
    ({"type": "multi", "graders": {"a": {"type": "string_check", "input": "x", "reference": "y", "operation": "eq"}},
      "calculate_output": "a + b"}, "g.calculate_output"),
])
def test_a_bad_grader_is_refused_naming_the_field(spec, param, tmp_path):
    with pytest.raises(RequestError) as caught:
        hone_grader(spec, param="g", run_dir=tmp_path, allow_python=True)
    error = from_exception(caught.value)
    assert error.status == 400 and error.param == param, error.message
    assert param in error.message


@pytest.fixture
def graded_prompts(tmp_path):
    """OpenAI's RFT training file: messages ending with a user turn, plus the fields the grader reads."""
    path = tmp_path / "rft.jsonl"
    words = ["pizza", "fox", "dog", "cheese", "order", "Paris", "quick", "lazy", "olives", "crust"]
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say {w}"}], "letter": "e"}) + "\n"
                            for w in words))
    return path


def test_a_reinforcement_job_runs_to_succeeded(service, graded_prompts, tiny_model_dir):
    service.settings.allow_python_graders = True
    client = service.client()
    file_id = upload(client, graded_prompts).json()["id"]
    grader = {"type": "multi", "graders": {
        "has_e": {"type": "string_check", "input": "{{sample.output_text}}", "reference": "{{item.letter}}",
                  "operation": "like"},
        "short": {"type": "python", "source": "def grade(sample, item):\n"
                                              "    return 1.0 if len(sample['output_text']) < 20 else 0.0\n"}},
        "calculate_output": "0.5 * has_e + 0.5 * short"}
    body = {"model": str(tiny_model_dir), "training_file": file_id, "suffix": "rl",
            "method": {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {
                "batch_size": 2, "compute_multiplier": 0.25, "eval_interval": 2}}},
            "hone": {"train.max_steps": 3, "objective.max_new_tokens": 4}}
    bad = json.loads(json.dumps(body))
    bad["method"]["reinforcement"]["grader"]["graders"]["has_e"]["operation"] = "equals"
    error = client.post("/v1/fine_tuning/jobs", json=bad)
    assert error.status_code == 400
    assert error.json()["error"]["param"] == "method.reinforcement.grader.graders.has_e.operation"
    response = client.post("/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    hyper = job["method"]["reinforcement"]["hyperparameters"]
    assert hyper == {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 1.0, "eval_interval": 2,
                     "eval_samples": 1, "compute_multiplier": 0.25, "reasoning_effort": "medium"}
    assert job["method"]["reinforcement"]["grader"] == grader
    config = service.store.get_job(None, job["id"])["config"]
    objective = config["objective"]
    assert objective["type"] == "grpo" and objective["group_size"] == 2 and objective["max_new_tokens"] == 4
    assert config["train"]["eval_every"] == 2
    source = service.data_dir / "runs" / job["id"] / "graders" / "python_0.py"
    assert objective["grader"]["graders"]["short"]["function"] == f"{source}:grade" and source.is_file()
    service.start_worker("--allow-python-graders")
    done = wait_for(lambda: (j := client.get(f"/v1/fine_tuning/jobs/{job['id']}").json())["status"] in
                    ("succeeded", "failed", "cancelled") and j, what="the reinforcement job to end")
    assert done["status"] == "succeeded", (done["error"], service.worker_logs())
    metrics = [json.loads(line) for line in
               (service.data_dir / "runs" / job["id"] / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in metrics if "reward_std" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(0.0 <= r["reward"] <= 1.0 and r["grader_errors"] == 0 for r in steps)  # both graders ran
    listed = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert done["fine_tuned_model"] in listed


def _python_job(service, graded_prompts, tiny_model_dir, source: str, **hone) -> dict:
    """A small reinforcement job whose grader is the python `source`, created and run to its end."""
    client = service.client()
    file_id = upload(client, graded_prompts).json()["id"]
    body = {"model": str(tiny_model_dir), "training_file": file_id, "seed": 0,
            "method": {"type": "reinforcement", "reinforcement": {
                "grader": {"type": "python", "name": "checker", "source": source},
                "hyperparameters": {"batch_size": 2, "compute_multiplier": 0.25}}},
            "hone": {"train.max_steps": 3, "objective.max_new_tokens": 4, "data.validation_fraction": 0, **hone}}
    response = client.post("/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    service.start_worker("--allow-python-graders")
    wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] in
             ("succeeded", "failed", "cancelled"), what="the reinforcement job to end")
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 100}).json()["data"]
    return {**client.get(f"/v1/fine_tuning/jobs/{job['id']}").json(), "events": events}


def test_python_graders_are_off_unless_the_operator_allows_them(service, graded_prompts, tiny_model_dir):
    openai = service.openai()
    file_id = openai.files.create(file=graded_prompts.open("rb"), purpose="fine-tune").id
    grader = {"type": "python", "source": "def grade(sample, item):\n    return 1.0\n"}
    method = {"type": "reinforcement", "reinforcement": {"grader": grader}}
    import openai as openai_module

    with pytest.raises(openai_module.BadRequestError) as refused:
        openai.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id, method=method)
    assert "python graders are off" in refused.value.message and "--allow-python-graders" in refused.value.message
    string_check = {"type": "string_check", "input": "{{sample.output_text}}", "reference": "x", "operation": "eq"}
    sneaked = {"objective.grader": {"type": "python", "function": "/etc/passwd.py:grade", "sandbox": False}}
    service.settings.allow_python_graders = True
    with pytest.raises(openai_module.BadRequestError) as refused:  # no code on the server through `hone` keys
        openai.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id, extra_body={"hone": sneaked},
                                       method={"type": "reinforcement", "reinforcement": {"grader": string_check}})
    assert "cannot name code on the server" in refused.value.message

    job = openai.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=file_id, method=method)
    service.start_worker()  # a worker without --allow-python-graders refuses the job, whatever the API took
    failed = wait_for(lambda: (j := openai.fine_tuning.jobs.retrieve(job.id)).status == "failed" and j,
                      what="the job to fail")
    assert failed.error.code == "python_graders_disabled" and "--allow-python-graders" in failed.error.message


def test_a_grader_failing_on_every_item_fails_the_job_before_training(service, graded_prompts, tiny_model_dir):
    service.settings.allow_python_graders = True
    source = "def grade(sample, item):\n    raise RuntimeError('the grader is broken')\n"
    job = _python_job(service, graded_prompts, tiny_model_dir, source)
    assert job["status"] == "failed", service.worker_logs()
    error = job["error"]
    assert error["code"] == "grader_error" and "python grader 'checker'" in error["message"]
    assert "RuntimeError: the grader is broken" in error["message"] and str(service.data_dir) not in error["message"]
    grader_events = [e for e in job["events"] if e["message"].startswith("Grader error on")]
    assert len(grader_events) == 1  # three items, one message: listed once
    assert grader_events[0]["data"]["item"] == f"{job['training_file']}:1"
    assert "RuntimeError: the grader is broken" in grader_events[0]["message"]
    assert not (service.data_dir / "runs" / job["id"] / "metrics.jsonl").exists()  # no step was trained


def test_a_grader_failing_on_a_few_answers_is_reported_and_the_job_goes_on(service, graded_prompts,
                                                                             tiny_model_dir):
    service.settings.allow_python_graders = True
    source = ("def grade(sample, item):\n"
              "    if item['messages'][0]['content'] in ('Say olives', 'Say crust'):\n"
              "        raise KeyError('no rule for ' + item['messages'][0]['content'])\n"
              "    return 0.5\n")
    job = _python_job(service, graded_prompts, tiny_model_dir, source)
    assert job["status"] == "succeeded", (job["error"], service.worker_logs())
    grader_events = [e for e in job["events"] if e["message"].startswith("Grader error on")]
    assert grader_events and all("KeyError: 'no rule for Say " in e["message"] for e in grader_events)
    assert {e["data"]["item"] for e in grader_events} <= {f"{job['training_file']}:9", f"{job['training_file']}:10"}
    metrics = [json.loads(line) for line in
               (service.data_dir / "runs" / job["id"] / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("grader_errors", 0) > 0 for r in metrics) >= 1

