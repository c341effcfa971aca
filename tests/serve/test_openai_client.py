"""The official `openai` client against a real server: models, chat, completions, streaming, n/seed/stop."""

CHAT = [{"role": "user", "content": "Order a large pizza"}]


def test_models_lists_the_base_and_each_adapter_with_its_parent(client, server, tiny_model_dir):
    models = {m.id: m for m in client.models.list().data}
    base = str(tiny_model_dir)
    assert set(models) == {base, "adapter-000", "adapter-001", "adapter-002"}
    assert models[base].model_extra.get("parent") is None
    assert all(models[f"adapter-00{k}"].model_extra["parent"] == base for k in range(3))


def test_chat_completion_with_usage_counts(client, server):
    from hone.data.template import prompt_ids

    app = server[1]
    r = client.chat.completions.create(model="adapter-001", messages=CHAT, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.model == "adapter-001"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    expected_prompt = len(prompt_ids(CHAT, app.state.hone.engine.tokenizer))
    assert r.usage.prompt_tokens == expected_prompt
    assert 0 < r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.choices[0].finish_reason in ("stop", "length")


def test_streaming_gives_the_same_text_as_a_plain_reply(client):
    plain = client.chat.completions.create(model="adapter-000", messages=CHAT, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="adapter-000", messages=CHAT, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_text_completions_with_several_prompts_n_and_streaming(client, server):
    base = server[1].state.hone.base_name
    r = client.completions.create(model=base, prompt=["The quick brown", "Order a"], max_tokens=5, n=2,
                                  temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text == r.choices[1].text and r.choices[2].text == r.choices[3].text  # greedy
    streamed = list(client.completions.create(model=base, prompt="The quick brown", max_tokens=5, temperature=0,
                                              stream=True))
    assert "".join(c.choices[0].text for c in streamed) == r.choices[0].text


def test_seed_makes_sampling_reproducible(client):
    ask = dict(model="adapter-002", messages=CHAT, max_tokens=8, temperature=1.5, n=3)
    a = client.chat.completions.create(seed=7, **ask)
    b = client.chat.completions.create(seed=7, **ask)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len({c.message.content for c in a.choices}) > 1  # n samples differ from each other


def test_stop_strings_cut_the_text_and_top_p_tiny_is_greedy(client):
    greedy = client.chat.completions.create(model="adapter-000", messages=CHAT, max_tokens=12, temperature=0)
    text = greedy.choices[0].message.content
    at = next(k for k in range(1, len(text)) if text.find(text[k]) == k)  # a character first seen at k > 0
    stop = text[at]
    cut = client.chat.completions.create(model="adapter-000", messages=CHAT, max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == text[:at]
    assert cut.choices[0].finish_reason == "stop"
    nucleus = client.chat.completions.create(model="adapter-000", messages=CHAT, max_tokens=12, temperature=1.0,
                                             top_p=1e-6, seed=1)
    assert nucleus.choices[0].message.content == text
