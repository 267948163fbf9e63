"""Learning-rate schedules: warmup shapes, and linear decay over a step or time budget."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from transduce.config import SchedulerConfig
from transduce.training.schedules import (
    inverse_sqrt_factor,
    linear_factor,
    make_scheduler,
    noam_factor,
)


def test_linear_decay_over_a_step_budget_is_warmup_then_a_straight_line_to_zero():
    warmup, total = 10, 50
    factors = [linear_factor(s, warmup, s / total) for s in range(1, total + 1)]
    # warmup rises linearly to the peak, which is reached exactly at `warmup`
    assert factors[:warmup] == pytest.approx([s / warmup for s in range(1, warmup + 1)])
    assert max(factors) == pytest.approx(1.0) and factors.index(max(factors)) == warmup - 1
    # then the same amount is taken off at every step, down to 0 at the last one
    decay = factors[warmup - 1:]
    steps = [a - b for a, b in pairwise(decay)]
    assert steps == pytest.approx([1 / (total - warmup)] * len(steps))
    assert factors[-1] == 0.0
    assert linear_factor(total + 5, warmup, (total + 5) / total) == 0.0  # never negative


def test_linear_decay_over_a_time_budget_follows_the_clock():
    # At a steady pace the time fraction gives the same curve as counting updates ...
    warmup, total = 4, 40
    for s in range(1, total + 1):
        assert linear_factor(s, warmup, 0.5 * s / (total / 2)) == \
            pytest.approx(linear_factor(s, warmup, s / total))
    # ... and when updates get slower (the time budget runs out sooner) the lr comes down
    # faster than a count of updates would say
    assert linear_factor(20, warmup, 0.8) < linear_factor(20, warmup, 20 / total)
    assert linear_factor(20, warmup, 1.0) == 0.0


def test_linear_scheduler_drives_the_optimizer_from_the_budget():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    with pytest.raises(ValueError, match="linear"):
        make_scheduler(SchedulerConfig(kind="linear", warmup=2), opt, 8)
    sched = make_scheduler(SchedulerConfig(kind="linear", warmup=2), opt, 8,
                           budget_used=lambda s: s / 6)
    lrs = []
    for _ in range(6):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    # updates 1..6 of a 6-update budget: warmup (2 updates), then down by a quarter a step
    assert lrs == pytest.approx([0.05, 0.1, 0.075, 0.05, 0.025, 0.0])


def test_warmup_schedules_peak_at_the_end_of_warmup():
    assert inverse_sqrt_factor(100, 100) == pytest.approx(1.0)
    assert inverse_sqrt_factor(400, 100) == pytest.approx(0.5)
    assert inverse_sqrt_factor(50, 100) == pytest.approx(0.5)
    peak = max(range(1, 1000), key=lambda s: noam_factor(s, 100, 256))
    assert peak == 100
    assert noam_factor(100, 100, 256) == pytest.approx(256 ** -0.5 * 100 ** -0.5)
