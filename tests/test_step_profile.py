"""benchmarks/step_profile.py: its FLOP count and op census are exact on known ops; a bad --report is one line."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from click.testing import CliRunner

from benchmarks import step_profile


def test_flop_count_of_a_convolution_and_a_matmul():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    with step_profile.FlopCount() as count:
        F.conv2d(x, w, padding=1)
        torch.randn(5, 6) @ torch.randn(6, 7)
        x + 1  # elementwise ops have no formula: not counted
    # 2 flops per multiply-add: conv = outputs (2*4*8*8) x taps (3*3*3); mm = 5*7 outputs x 6.
    assert count.by_op["aten.convolution"] == 2 * (2 * 4 * 8 * 8) * (3 * 3 * 3)
    assert count.by_op["aten.mm"] == 2 * 5 * 6 * 7
    assert count.total == 2 * 2 * 4 * 8 * 8 * 27 + 2 * 5 * 6 * 7


def _three_ops(x):
    y = x + 1
    return y * 2, y.sum()


def test_op_census_names_the_issuing_line():
    x = torch.randn(3)
    with step_profile.OpCensus() as census:
        _three_ops(x)
    sites = dict(census.by_site)
    assert sum(sites.values()) == 3
    first = _three_ops.__code__.co_firstlineno
    assert sites == {f"tests/test_step_profile.py:{first + 1} _three_ops": 1,
                     f"tests/test_step_profile.py:{first + 2} _three_ops": 2}
    assert census.by_file() == {"tests/test_step_profile.py": 3}


def test_unknown_report_is_one_line():
    result = CliRunner().invoke(step_profile.main, ["--report=flops,speed"])
    assert result.exit_code == 2
    assert "unknown report(s) speed; choose from flops, ops, profile, passes" in result.output
    assert "Traceback" not in result.output
