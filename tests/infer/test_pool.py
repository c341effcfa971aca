"""The engine pool: the served base stays, other bases load on demand, at most `max_bases` at once (LRU)."""

from hone.infer.engine import Engine
from hone.infer.pool import EnginePool
from hone.models.tiny import save_tiny_model


def test_other_bases_load_on_demand_and_the_least_recently_used_goes(tmp_path):
    bases = [str(save_tiny_model(tmp_path / f"base-{n}", seed=n)) for n in range(4)]
    loaded = []

    def create(spec):
        loaded.append(spec)
        return Engine.from_spec(spec)

    primary = Engine.from_spec(bases[0])
    pool = EnginePool(primary, create, max_bases=3)
    assert pool.get(bases[0]) is primary and loaded == []
    first, second = pool.get(bases[1]), pool.get(bases[2])
    assert first.source.id == bases[1] and second.source.id == bases[2]
    assert pool.get(bases[1]) is first and loaded == bases[1:3]  # kept, and now the most recent
    third = pool.get(bases[3])  # room for it: bases[2], least recently used, goes first
    assert list(pool.others) == [bases[1], bases[3]] and second._worker is None
    assert pool.engines() == [primary, first, third] and third._worker is not None
    assert pool.get(bases[2]) is not second and loaded == [*bases[1:4], bases[2]]
    pool.stop()
    assert pool.others == {} and first._worker is None
