"""The oneDNN-routed products equal plain batched matmuls, for every weight and bias layout, and take the
convolution route only where it is meant to."""

from __future__ import annotations

import pytest
import torch

from msa_hf.inference.click_products import rows_times_transposed, weight_times


def _random(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _ran_a_convolution(function) -> bool:
    with torch.profiler.profile() as profile:
        function()
    return any("convolution" in event.name for event in profile.events())


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("bias_layout", ["none", "shared", "per image"])
def test_rows_times_transposed_equals_matmul(batch, bias_layout):
    rows, weight = _random(batch, 300, 40, seed=0), _random(batch, 24, 40, seed=1)
    bias = {"none": None, "shared": _random(24, seed=2), "per image": _random(batch, 24, seed=2)}[bias_layout]
    expected = rows @ weight.transpose(1, 2)
    if bias is not None:
        expected = expected + bias.view(-1, 1, 24)
    got = rows_times_transposed(rows, weight, bias)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert _ran_a_convolution(lambda: rows_times_transposed(rows, weight, bias)) == (batch == 1)


def test_a_weight_shared_by_the_batch_goes_through_one_convolution():
    rows, weight, bias = _random(3, 50, 16, seed=3), _random(1, 8, 16, seed=4), _random(8, seed=5)
    got = rows_times_transposed(rows, weight, bias)
    torch.testing.assert_close(got, torch.nn.functional.linear(rows, weight[0], bias), atol=1e-5, rtol=1e-5)
    assert _ran_a_convolution(lambda: rows_times_transposed(rows, weight, bias))


@pytest.mark.parametrize("batch", [1, 2])
def test_weight_times_equals_bmm(batch):
    weight, columns = _random(batch, 56, 500, seed=6), _random(batch, 500, 32, seed=7)
    torch.testing.assert_close(weight_times(weight, columns), weight @ columns, atol=1e-4, rtol=1e-5)
    assert _ran_a_convolution(lambda: weight_times(weight, columns)) == (batch == 1)


def test_bfloat16_inputs_keep_their_dtype():
    rows, weight = _random(1, 64, 32, seed=8).bfloat16(), _random(1, 16, 32, seed=9).bfloat16()
    got = rows_times_transposed(rows, weight)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(
        got.float(), (rows.float() @ weight.float().transpose(1, 2)), atol=0.1, rtol=0.02
    )
