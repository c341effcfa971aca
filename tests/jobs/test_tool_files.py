"""Function-calling training files in OpenAI's format are taken by the service; a malformed line is
refused at upload with its line number and field."""

import json

import openai
import pytest

from tests.data.records import weather_record


def upload(client, path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return client.files.create(file=open(path, "rb"), purpose="fine-tune")


def test_a_tool_call_file_uploads_and_a_job_is_created_on_it(service, tiny_model_dir, tmp_path):
    client = service.openai()
    records = [weather_record(city) for city in ("Paris", "Rome", "Oslo", "Lima", "Kyiv", "Bern", "Riga", "Doha",
                                                 "Baku", "Lome", "Apia", "Suva")]
    records[0]["parallel_tool_calls"] = False
    uploaded = upload(client, tmp_path / "tools.jsonl", records)
    assert uploaded.model_extra["report"]["formats"] == {"chat": 12}
    job = client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=uploaded.id)
    assert job.status in ("validating_files", "queued") and job.error is None


def test_a_call_with_bad_arguments_is_refused_naming_its_line(service, tmp_path):
    bad = weather_record()
    bad["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{city: Paris}"
    with pytest.raises(openai.BadRequestError) as refused:
        upload(service.openai(), tmp_path / "bad.jsonl", [weather_record(), bad])
    assert "2: messages[1].tool_calls[0].function.arguments: is not valid JSON" in refused.value.body["message"]
