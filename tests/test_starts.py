"""Generator starts (``--generator-starts``): several starts tried, the best-graded one goes on, exactly."""

import copy

import pytest
import torch
import torch.nn.functional as F

from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.meta import ArchSpec, ModelMeta
from edge_xcnn.models import build_model, forward_logits_heatmap
from edge_xcnn.train.recipes import get_recipe
from edge_xcnn.train.starts import choose_start, fresh_generator, start_seed

META = ModelMeta(ArchSpec("xcnn", "mnist_net", 3, 16, 3, generator="context"), tuple("0123456789"), (32, 32),
                 (0.5,) * 3, (0.5,) * 3)  # fmt: skip


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)


def _trainer(record: dict[int, dict[str, torch.Tensor]]):
    """A real trial: five Adam steps of cross-entropy on one batch, graded by the loss that follows (lower wins)."""
    images, labels = _batch()

    def trial(net: torch.nn.Module, index: int) -> tuple[float, object]:
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        net.train()
        for _ in range(5):
            loss = F.cross_entropy(forward_logits_heatmap(net, images)[0], labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            after = F.cross_entropy(forward_logits_heatmap(net, images)[0], labels).item()
        record[index] = copy.deepcopy(net.state_dict())
        return -after, opt

    return trial


def test_the_best_graded_start_is_kept_where_its_trial_ended():
    torch.manual_seed(0)
    model = build_model(META)
    record: dict[int, dict[str, torch.Tensor]] = {}
    choice = choose_start(model, 4, lambda i: fresh_generator(META, 3, i), _trainer(record))
    assert len(choice.scores) == 4 and len(set(choice.scores)) == 4  # four different starts
    assert choice.index == max(range(4), key=lambda i: (choice.scores[i], -i))
    for key, value in model.state_dict().items():
        assert torch.equal(value, record[choice.index][key]), key
    assert isinstance(choice.carried, torch.optim.Adam)


def test_a_start_is_drawn_the_same_every_time_without_moving_the_global_random_state():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = fresh_generator(META, 0, 1), fresh_generator(META, 0, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = fresh_generator(META, 0, 2)
    assert any(not torch.equal(a[k], other[k]) for k in a if a[k].is_floating_point())
    # apart from every recipe seed's own start (torch.manual_seed(seed) before building the model)
    assert {start_seed(s, i) for s in range(50) for i in range(1, 20)}.isdisjoint(range(1000))


def test_the_runs_own_start_winning_continues_as_the_run_without_starts():
    """Start 1 is a dead generator (zero weights: a flat map, nothing to read), so start 0 wins; the model must
    then be exactly where one start alone leaves it, although start 1 was trained after it."""
    torch.manual_seed(0)
    alone = build_model(META)
    both = copy.deepcopy(alone)
    choose_start(alone, 1, lambda i: {}, _trainer({}))

    def dead(index: int) -> dict[str, torch.Tensor]:
        return {k: torch.zeros_like(v) for k, v in both.generator.state_dict().items()}

    choice = choose_start(both, 2, dead, _trainer({}))
    assert choice.index == 0 and choice.scores[0] > choice.scores[1]
    for key, value in alone.state_dict().items():
        assert torch.equal(value, both.state_dict()[key]), key


def test_starts_are_refused_below_one():
    with pytest.raises(EdgeXcnnError, match="--generator-starts"):
        get_recipe("synthetic").with_overrides(generator_starts=0).validate()
    with pytest.raises(ValueError):
        choose_start(build_model(META), 0, lambda i: {}, _trainer({}))
