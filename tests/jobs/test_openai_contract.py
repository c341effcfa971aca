"""The contract: the official `openai` client (pinned in the test extra) drives every call of OpenAI's
fine-tuning API against a real `hone service` on loopback. One service and one tiny trained job serve
every test of this module; the tests run in file order, and the last one deletes the tuned model."""

import json
import time

import openai
import pytest

from tests.jobs.conftest import running_service, wait_for

ENDED = ("succeeded", "failed", "cancelled")
INTEGRATION = {"type": "wandb", "wandb": {"project": "pizza", "name": "contract", "entity": "team", "tags": ["t1"]}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pizza_data, tiny_model_dir):
    """(service, alpha's client, the finished job, the estimates of its finish seen while it ran)."""
    with running_service(tmp_path_factory.mktemp("contract"), tiny_model_dir, allow_python_graders=True) as service:
        client = service.openai()
        training = client.files.create(file=open(pizza_data[0], "rb"), purpose="fine-tune")
        validation = client.files.create(file=open(pizza_data[1], "rb"), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=training.id, validation_file=validation.id, suffix="pizza",
            seed=3, metadata={"suite": "contract"}, integrations=[INTEGRATION],
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
            extra_body={"hone": {"train.max_steps": 6, "train.save_every": 2, "train.eval_every": 2,
                                 "train.lr": 5e-3, "data.max_length": 256}})
        service.start_worker("--exit-when-idle")
        estimates = []

        def ended():
            current = client.fine_tuning.jobs.retrieve(job.id)
            if current.status == "running" and current.estimated_finish is not None:
                estimates.append((time.time(), current.estimated_finish))
            return current.status in ENDED and current

        done = wait_for(ended, every=0.2, what="the job to end")
        assert done.status == "succeeded", (done.error, service.worker_logs())
        yield service, client, done, estimates


def test_files_create_retrieve_list_content_and_delete(trained, pizza_data):
    _, client, job, _ = trained
    assert client.files.retrieve(job.training_file).purpose == "fine-tune"
    assert {job.training_file, job.validation_file} <= {f.id for f in client.files.list()}
    assert client.files.content(job.training_file).content == pizza_data[0].read_bytes()
    extra = client.files.create(file=open(pizza_data[1], "rb"), purpose="fine-tune")
    assert client.files.delete(extra.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(extra.id)


def test_the_job_object_has_every_field_filled(trained, tiny_model_dir):
    service, client, job, estimates = trained
    assert job.object == "fine_tuning.job" and job.model == str(tiny_model_dir) and job.seed == 3
    assert job.fine_tuned_model.endswith(job.id.removeprefix("ftjob-")[:8]) and ":pizza:" in job.fine_tuned_model
    assert job.organization_id == service.store.project_by_name("alpha")["id"]
    assert job.method.type == "supervised" and job.method.supervised.hyperparameters.batch_size == 2
    assert job.hyperparameters.n_epochs == 1 and job.metadata == {"suite": "contract"}
    assert job.user_provided_suffix == "pizza" and job.trained_tokens > 0 and job.finished_at >= job.created_at
    assert job.estimated_finish is None  # it has finished
    assert [i.model_dump() for i in job.integrations] == [INTEGRATION]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"suite": "contract"})] == [job.id]
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1).data] == [job.id]


def test_estimated_finish_came_from_the_measured_step_rate(trained):
    _, _, job, estimates = trained
    assert estimates, "no estimate of the finish was shown while the job ran"
    assert all(job.created_at <= estimate <= job.finished_at + 60 for _, estimate in estimates)  # near the end


def test_the_wandb_integration_wrote_tensorboard_events(trained):
    service, _, job, _ = trained
    folder = service.data_dir / "runs" / job.id / "tracking" / "pizza" / "contract"
    scalars = _scalars(folder)
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in scalars["val_loss"]] == [2, 4, 6]
    assert all(0.0 <= value <= 1.0 for _, value in scalars["mean_token_accuracy"])


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """The scalars of TensorBoard's event files in `folder` (TFRecords: length, its CRC, an Event, its CRC)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_events_page_backwards_in_time(trained):
    _, client, job, _ = trained
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=3))  # auto-paging, 3 at a time
    assert events[0].message.startswith("New fine-tuned model created")
    assert events[-1].message.startswith("Validating training file")
    assert len({e.id for e in events}) == len(events)


def test_checkpoints_carry_all_seven_metrics(trained):
    _, client, job, _ = trained
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [6, 4, 2]
    for checkpoint in checkpoints:
        m = checkpoint.metrics
        assert m.step == checkpoint.step_number and m.train_loss > 0
        assert 0.0 <= m.train_mean_token_accuracy <= 1.0 and 0.0 <= m.valid_mean_token_accuracy <= 1.0
        assert m.valid_loss > 0 and m.full_valid_loss == m.valid_loss  # hone validates on the whole file
        assert m.full_valid_mean_token_accuracy == m.valid_mean_token_accuracy
        assert checkpoint.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-{m.step:.0f}"


def test_a_checkpoint_model_is_callable_and_shared_by_permission(trained):
    service, client, job, _ = trained
    beta = service.openai("beta")
    beta_id = service.store.project_by_name("beta")["id"]
    step2 = f"{job.fine_tuned_model}:ckpt-step-2"
    chat = dict(messages=[{"role": "user", "content": "One margherita"}], max_tokens=4, temperature=0)
    assert client.chat.completions.create(model=step2, **chat).model == step2
    with pytest.raises(openai.NotFoundError):
        beta.chat.completions.create(model=step2, **chat)

    granted = client.fine_tuning.checkpoints.permissions.create(step2, project_ids=[beta_id])
    assert [(p.object, p.project_id) for p in granted.data] == [("checkpoint.permission", beta_id)]
    assert beta.chat.completions.create(model=step2, **chat).choices[0].message.content is not None
    listed = client.fine_tuning.checkpoints.permissions.retrieve(step2)
    assert [p.id for p in listed.data] == [granted.data[0].id] and not listed.has_more
    assert [p.id for p in client.fine_tuning.checkpoints.permissions.list(step2, project_id=beta_id)] == \
        [granted.data[0].id]
    with pytest.raises(openai.NotFoundError):  # only the checkpoint's project lists or grants
        beta.fine_tuning.checkpoints.permissions.retrieve(step2)
    with pytest.raises(openai.BadRequestError) as unknown:
        client.fine_tuning.checkpoints.permissions.create(step2, project_ids=["proj-none"])
    assert unknown.value.body["param"] == "project_ids[0]"

    deleted = client.fine_tuning.checkpoints.permissions.delete(granted.data[0].id,
                                                                 fine_tuned_model_checkpoint=step2)
    assert deleted.deleted and deleted.id == granted.data[0].id
    with pytest.raises(openai.NotFoundError):
        beta.chat.completions.create(model=step2, **chat)


def test_graders_validate_and_run(trained):
    _, client, _, _ = trained
    check = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
             "reference": "{{ item.answer }}", "operation": "eq"}
    assert client.fine_tuning.alpha.graders.validate(grader=check).grader.type == "string_check"
    right = client.fine_tuning.alpha.graders.run(grader=check, model_sample="42", item={"answer": "42"})
    wrong = client.fine_tuning.alpha.graders.run(grader=check, model_sample="41", item={"answer": "42"})
    assert (right.reward, wrong.reward) == (1.0, 0.0)
    assert right.metadata.name == "exact" and right.metadata.type == "string_check"
    assert not any(v for k, v in right.metadata.errors.model_dump().items() if k.endswith("error"))

    python = {"type": "python", "name": "length", "source": "def grade(sample, item):\n"
              "    return min(1.0, len(sample['output_text']) / item['target'])\n"}
    assert client.fine_tuning.alpha.graders.run(grader=python, model_sample="abcd", item={"target": 8}).reward == 0.5
    broken = client.fine_tuning.alpha.graders.run(grader=python, model_sample="abcd", item={})
    assert broken.reward == 0.0 and broken.metadata.errors.python_grader_runtime_error

    multi = {"type": "multi", "graders": {"a": check, "b": python}, "calculate_output": "0.5 * a + 0.5 * b"}
    both = client.fine_tuning.alpha.graders.run(grader=multi, model_sample="42", item={"answer": "42", "target": 4})
    assert both.reward == pytest.approx(0.75) and both.sub_rewards == {"a": 1.0, "b": 0.5}
    with pytest.raises(openai.BadRequestError) as bad:
        client.fine_tuning.alpha.graders.validate(grader={**check, "operation": "near"})
    assert bad.value.body["param"] == "grader.operation"


def test_pause_resume_and_cancel(trained, tiny_model_dir):
    """A second job, with no worker left to run it: pause, resume and cancel act on it while it waits."""
    _, client, job, _ = trained
    second = client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=job.training_file)
    paused = client.fine_tuning.jobs.pause(second.id)
    assert paused.status == "paused"  # OpenAI's API reference has it; the client passes it through
    assert client.fine_tuning.jobs.resume(second.id).status == "queued"
    assert client.fine_tuning.jobs.cancel(second.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.resume(second.id)


def test_openai_file_rules_at_job_create(trained, tiny_model_dir, tmp_path):
    """Fewer than 10 examples, an example over the model's context, a method that does not fit the data:
    400s with OpenAI's code and param, the message naming the line."""
    _, client, job, _ = trained

    def create(lines, **method):
        path = tmp_path / f"f{len(list(tmp_path.iterdir()))}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        uploaded = client.files.create(file=open(path, "rb"), purpose="fine-tune")
        with pytest.raises(openai.BadRequestError) as refused:
            client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=uploaded.id, **method)
        body = refused.value.body
        assert (body["code"], body["param"]) == ("invalid_training_file", "training_file")
        return body["message"]

    chat = [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "hello"}]}
            for i in range(12)]
    assert "has 5 examples" in create(chat[:5]) and "at least 10" in create(chat[:5])
    long = chat[:3] + [{"messages": [{"role": "user", "content": "pizza " * 1200},
                                     {"role": "assistant", "content": "ok"}]}] + chat[3:]
    assert "line 4 has" in create(long) and "at most 1024 tokens" in create(long)
    message = create(chat, method={"type": "dpo", "dpo": {}})
    assert "line 1 is a chat" in message and "preference pairs" in message


def test_a_parameter_hone_cannot_honour_is_refused_by_name(trained, tiny_model_dir):
    _, client, job, _ = trained
    for integration, param in (({"type": "comet"}, "integrations[0].type"),
                               ({"type": "wandb", "wandb": {"project": "p", "secret": "x"}},
                                "integrations[0].wandb.secret"),
                               ({"type": "wandb", "wandb": {"project": "../../elsewhere"}},  # a folder name
                                "integrations[0].wandb.project")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=job.training_file,
                                           integrations=[integration])
        assert refused.value.body["param"] == param


def test_models_delete_removes_a_fine_tuned_model_and_refuses_the_base(trained, tiny_model_dir):
    _, client, job, _ = trained
    chat = dict(messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    with pytest.raises(openai.PermissionDeniedError):
        client.models.delete(str(tiny_model_dir))
    client.chat.completions.create(model=job.fine_tuned_model, **chat)  # loaded, then deleted
    deleted = client.models.delete(job.fine_tuned_model)
    assert deleted.deleted and deleted.id == job.fine_tuned_model
    assert job.fine_tuned_model not in {m.id for m in client.models.list()}
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=job.fine_tuned_model, **chat)
    with pytest.raises(openai.NotFoundError):
        client.models.delete(job.fine_tuned_model)
    checkpoint = f"{job.fine_tuned_model}:ckpt-step-4"
    assert client.models.delete(checkpoint).deleted
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=checkpoint, **chat)
