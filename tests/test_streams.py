"""The random streams of a run: one per use, reproducible from (seed, index, use) alone."""
import torch

from repro.runtime import streams


def test_each_use_has_its_own_stream():
    assert len(set(streams.USES.values())) == len(streams.USES)
    draws = {use: torch.rand(4, generator=streams.generator(3, 1, use)) for use in streams.USES}
    assert len({tuple(d.tolist()) for d in draws.values()}) == len(streams.USES)


def test_the_seeds_are_those_every_result_so_far_was_made_with():
    """Changing a seed changes every number of every table: it must be a decision."""
    salts = {"shuffle": 0, "train_noise": 1, "eval_noise": 2, "audit_pgd": 4, "autoattack": 5,
             "epsilon": 6}
    for use, salt in salts.items():
        assert streams.stream_seed(3, 7, use) == 1_000_003 * 3 + 1009 * 7 + salt
    assert set(streams.USES) == set(salts)


def test_a_stream_depends_on_seed_index_use_and_offset_only():
    def draw(*args, **kwargs):
        return torch.rand(4, generator=streams.generator(*args, **kwargs))
    assert torch.equal(draw(3, 1, "shuffle"), draw(3, 1, "shuffle"))
    assert not torch.equal(draw(3, 1, "shuffle"), draw(3, 2, "shuffle"))
    assert not torch.equal(draw(3, 1, "shuffle"), draw(4, 1, "shuffle"))
    assert not torch.equal(draw(3, 1, "epsilon"), draw(3, 1, "epsilon", offset=1))
