import torch

from hone.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from hone.train.optim import build_scheduler, lr_factor


class Cfg:
    lr, weight_decay, schedule, warmup_steps = 0.1, 0.0, "cosine", 2


def _model():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    return model


def test_checkpoint_round_trip_and_leftovers_ignored(tmp_path):
    model = _model()
    opt = torch.optim.AdamW([model.weight], lr=0.1)
    sched = build_scheduler(opt, Cfg, 10)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    save_checkpoint(tmp_path, 1, model, opt, sched, {"total_steps": 10})
    (tmp_path / "checkpoints" / ".tmp-step-2").mkdir()  # a kill during the next save leaves this behind
    assert latest_checkpoint(tmp_path).name == "step-1"

    other = _model()
    opt2 = torch.optim.AdamW([other.weight], lr=0.1)
    sched2 = build_scheduler(opt2, Cfg, 10)
    state = load_checkpoint(latest_checkpoint(tmp_path), other, opt2, sched2)
    assert state["step"] == 1
    assert torch.equal(other.weight, model.weight)
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    model = _model()
    opt = torch.optim.AdamW([model.weight], lr=0.1)
    sched = build_scheduler(opt, Cfg, 10)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, opt, sched, {}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-2", "step-3"]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-3"
    save_checkpoint(tmp_path, 4, model, opt, sched, {})  # the default keeps the newest alone
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-4"]


def test_lr_schedules_by_hand():
    assert lr_factor(0, 10, "cosine", 1) == 0.5  # warmup: (0 + 1) / (1 + 1)
    assert lr_factor(1, 11, "cosine", 1) == 1.0
    assert abs(lr_factor(6, 11, "cosine", 1) - 0.5) < 1e-12  # halfway through the cosine
    assert lr_factor(11, 11, "cosine", 1) < 1e-12
    assert lr_factor(5, 10, "linear", 0) == 0.5
    assert lr_factor(9, 10, "constant", 0) == 1.0
