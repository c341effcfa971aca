"""`hone demo`'s flow on the tiny model: train, three contenders, forgetting suite, report."""

import json

from hone.examples import pizza


def test_pizza_prompt_is_the_hand_written_prompt():
    from hone.demo import pizza_prompt

    text = "Two large pepperoni pizzas, delivered please."
    item = [{"role": "system", "content": pizza.SYSTEM_PROMPT}, {"role": "user", "content": text}]
    assert pizza_prompt()(item) == pizza.prompted_messages(text)


def test_demo_flow_writes_the_table_and_the_report(tmp_path, monkeypatch, tiny_model_dir, capsys):
    from hone.demo import run_demo

    monkeypatch.setenv("HONE_HOME", str(tmp_path / "home"))
    summary = run_demo(str(tmp_path), [f"model={tiny_model_dir}", "train.max_steps=2", "train.threads=1",
                                       "train.precision=fp32", "eval.max_new_tokens=4", "forgetting.max_new_tokens=4",
                                       "train.eval_every=1"], progress=False)
    assert list(summary["rows"]) == ["base, task prompt only", "base, best prompt + 2 examples", "LoRA-tuned"]
    assert summary["status"] == "succeeded"
    page = (tmp_path / "demo" / "report" / "index.html").read_text()
    assert 'id="contenders"' in page and 'id="forgetting-table"' in page
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["report"].endswith("index.html")
    out = capsys.readouterr().out
    assert "| LoRA-tuned |" in out and "scoring tuned" not in out.split("[2/3]")[1]  # tuned came from the cache
