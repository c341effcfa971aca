"""A real uvicorn on 127.0.0.1 serving the tiny model with three random LoRA adapters."""

import pytest


@pytest.fixture(scope="session")
def random_adapters(tiny_model_dir, tmp_path_factory):
    """Three random LoRA artifacts on the tiny base (each changes greedy outputs its own way)."""
    from hone.infer.synthetic import save_random_adapters

    return save_random_adapters(str(tiny_model_dir), tmp_path_factory.mktemp("adapters"), 3)


@pytest.fixture(scope="session")
def key_file(tmp_path_factory):
    """An admin key and a key scoped to adapter-000, created as `hone keys create` does."""
    from hone.serve.auth import KeyFile

    keys = KeyFile(tmp_path_factory.mktemp("keys") / "keys.json")
    _, admin = keys.create("admin", admin=True)
    _, scoped = keys.create("scoped", ["adapter-000"])
    return keys, {"admin": admin, "scoped": scoped}


@pytest.fixture(scope="session")
def server(tiny_model_dir, random_adapters, key_file, tmp_path_factory):
    """(base URL, app, keys): the server with max 2 loaded adapters so the cache must evict."""
    import torch

    from hone.serve.app import create_app
    from hone.serve.run import running_server
    from hone.serve.settings import ServeSettings

    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("serve-home")
    settings = ServeSettings(model=str(tiny_model_dir), adapters_dir=str(random_adapters[0].parent),
                             keys_file=str(key_file[0].path), feedback_file=str(home / "feedback.jsonl"),
                             request_log=str(home / "requests.jsonl"), max_loaded_adapters=2,
                             max_prompt_tokens=200, max_tokens=64, max_n=4, max_body_bytes=20_000,
                             batch_wait_ms=100)
    app = create_app(settings)
    with running_server(app) as url:
        yield url, app, key_file[1]


@pytest.fixture
def client(server):
    """The official OpenAI client, pointed at the test server with the admin key."""
    import openai

    url, _, keys = server
    return openai.OpenAI(base_url=f"{url}/v1", api_key=keys["admin"], max_retries=0)


@pytest.fixture
def http(server):
    import httpx

    url, _, keys = server
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=120) as c:
        yield c
