# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Batched matrix products that run through oneDNN on CPU: the per-click decoder's large products.

PyTorch's CPU `matmul`/`bmm`/`linear` call MKL's sgemm, and MKL does not use AVX-512 on AMD processors: on the
AMD EPYC cores of our machines a `(4096 x 256) @ (256 x 256)` product runs at ~110 GMAC/s, while the same
product as a 1x1 convolution, which PyTorch hands to oneDNN, runs at ~250 GMAC/s (`(4096 x 256) @ (256 x 56)`:
0.60 ms vs 0.30 ms). A 1x1 convolution over an `(M, 1)` "image" with K channels is exactly a product with a
`(N, K)` weight, so these functions use it when the batch is one CPU tensor (the interactive case) and fall
back to `torch.baddbmm`/`torch.bmm` otherwise (other devices, or a batch whose images carry different
weights). Both routes return the same numbers up to float summation order (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _through_onednn(*tensors: torch.Tensor) -> bool:
    return (
        torch.backends.mkldnn.is_available()
        and all(t.device.type == "cpu" for t in tensors)
        and tensors[0].dtype in (torch.float32, torch.bfloat16)
    )


def rows_times_transposed(
    rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`rows @ weight.transpose(-1, -2) + bias`, what `F.linear` computes, with a weight per batch element.

    Shapes: rows `(B, M, K)`, weight `(B, N, K)` or `(1, N, K)` (shared by the batch), bias `(N,)`, `(B, N)`
    or None -> `(B, M, N)`.
    """
    batch, length, depth = rows.shape
    outputs = weight.shape[1]
    if weight.shape[0] == 1 and (bias is None or bias.numel() == outputs) and _through_onednn(rows, weight):
        # the (B*M, K) rows are a channels-last (1, K, B*M, 1) image: the output comes back channels-last too,
        # which is (B*M, N) row-major, so neither side is copied
        image = rows.reshape(1, batch * length, 1, depth).permute(0, 3, 1, 2)
        shared_bias = None if bias is None else bias.reshape(outputs)
        out = F.conv2d(image, weight.reshape(outputs, depth, 1, 1), shared_bias)
        return out.permute(0, 2, 3, 1).reshape(batch, length, outputs)
    if bias is None:
        return torch.matmul(rows, weight.transpose(-1, -2))
    bias = bias.reshape(-1, 1, outputs)
    return torch.baddbmm(bias, rows, weight.expand(batch, -1, -1).transpose(-1, -2))


def weight_times(weight: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """`weight @ columns`, a weight per batch element.

    Shapes: weight `(B, M, K)`, columns `(B, K, L)` -> `(B, M, L)`.
    """
    batch, outputs, depth = weight.shape
    if batch == 1 and _through_onednn(weight, columns):
        # columns (K, L) row-major are a (1, K, L, 1) image in the default layout: K input channels
        out = F.conv2d(columns.reshape(1, depth, -1, 1), weight.reshape(outputs, depth, 1, 1))
        return out.reshape(1, outputs, -1)
    return torch.bmm(weight, columns)


__all__ = ["rows_times_transposed", "weight_times"]
