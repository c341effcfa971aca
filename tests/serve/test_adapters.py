"""Many adapters on one base: mixed batches, runtime registration, the LRU cache."""

import concurrent.futures

import pytest

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
NAMES = ["adapter-000", "adapter-001", "adapter-002"]


def ask(client, model, max_tokens=8):
    r = client.chat.completions.create(model=model, messages=CHAT, max_tokens=max_tokens, temperature=0)
    return r.choices[0].message.content


def batch_count(app):
    return sum(s.value for m in app.state.hone.metrics.batch_rows.collect() for s in m.samples
               if s.name == "hone_batch_rows_count")


def test_concurrent_requests_for_different_adapters_get_their_own_answers(client, server):
    app = server[1]
    models = [app.state.hone.base_name, NAMES[0], NAMES[1]]  # two adapters + the base: fits the cache of 2
    alone = {m: ask(client, m) for m in models}
    assert len(set(alone.values())) == 3  # the adapters really differ from each other and from the base
    before = batch_count(app)
    requests = models * 3
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda m: ask(client, m), requests))
    assert together == [alone[m] for m in requests]
    assert batch_count(app) - before < len(requests)  # they shared forward passes


def test_admin_registers_and_unregisters_adapters_at_runtime(client, http, server, random_adapters):
    import openai

    r = http.post("/admin/adapters", json={"name": "copy", "path": str(random_adapters[1])})
    assert r.status_code == 200, r.text
    assert r.json()["parent"] == server[1].state.hone.base_name
    assert "copy" in {m.id for m in client.models.list().data}
    assert ask(client, "copy") == ask(client, "adapter-001")  # same weights, same answer
    assert http.post("/admin/adapters", json={"name": "copy", "path": str(random_adapters[1])}).status_code == 400
    assert http.delete("/admin/adapters/copy").status_code == 200
    with pytest.raises(openai.NotFoundError):
        ask(client, "copy")
    assert http.delete("/admin/adapters/copy").status_code == 404


def test_admin_needs_an_admin_key(server, random_adapters):
    import httpx

    url, _, keys = server
    body = {"name": "x", "path": str(random_adapters[0])}
    assert httpx.post(f"{url}/admin/adapters", json=body).status_code == 401
    scoped = {"Authorization": f"Bearer {keys['scoped']}"}
    r = httpx.post(f"{url}/admin/adapters", json=body, headers=scoped)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_admin"


def test_lru_cache_evicts_the_least_recent_and_reloads_identically(tiny_model_dir, random_adapters):
    from hone.data.template import prompt_ids
    from hone.infer.engine import Engine, Job

    engine = Engine.from_spec(str(tiny_model_dir), max_loaded=2)
    for path in random_adapters:
        engine.register(path.name, path)
    ids = prompt_ids(CHAT, engine.tokenizer)

    def answer(name):
        return engine.run([Job(ids, adapter=name, max_tokens=8)])[0][0].text

    first = {name: answer(name) for name in NAMES}  # loading the third evicts the first
    assert list(engine.registry.loaded) == NAMES[1:]
    assert engine.registry.stats.evictions == 1 and engine.registry.stats.misses == 3
    assert answer(NAMES[2]) == first[NAMES[2]] and engine.registry.stats.hits == 1
    assert answer(NAMES[0]) == first[NAMES[0]]  # reloaded after eviction: the same weights
    assert list(engine.registry.loaded) == [NAMES[2], NAMES[0]]
    assert engine.registry.stats.evictions == 2
    mixed = engine.run([Job(ids, adapter=name, max_tokens=8) for name in (NAMES[2], None, NAMES[0])])
    assert [c[0].text for c in mixed] == [first[NAMES[2]], answer(None), first[NAMES[0]]]


def test_the_cache_is_bounded_by_memory_too(tiny_model_dir, random_adapters):
    from hone.data.template import prompt_ids
    from hone.infer.engine import Engine, Job

    engine = Engine.from_spec(str(tiny_model_dir), max_loaded=10)
    for path in random_adapters:
        engine.register(path.name, path)
    ids = prompt_ids(CHAT, engine.tokenizer)
    engine.run([Job(ids, adapter=NAMES[0], max_tokens=2)])
    size = engine.registry.loaded[NAMES[0]]
    assert size > 0
    engine.registry.max_bytes = int(size * 2.5)
    for name in NAMES:
        engine.run([Job(ids, adapter=name, max_tokens=2)])
    assert list(engine.registry.loaded) == NAMES[1:]
    assert sum(engine.registry.loaded.values()) <= engine.registry.max_bytes


def test_unloading_every_adapter_restores_the_plain_base(tiny_model_dir, random_adapters):
    from hone.data.template import prompt_ids
    from hone.infer.engine import Engine, Job

    engine = Engine.from_spec(str(tiny_model_dir))
    ids = prompt_ids(CHAT, engine.tokenizer)
    base = engine.run([Job(ids, max_tokens=8)])[0][0].text
    engine.register("a", random_adapters[0])
    assert engine.run([Job(ids, adapter="a", max_tokens=8)])[0][0].text != base
    engine.unregister("a")
    assert engine.lora.slot_of == {} and engine.run([Job(ids, max_tokens=8)])[0][0].text == base
