"""Host → device copies: same values and dtype as ``.to``; non-blocking from pinned memory on CUDA."""

import pytest
import torch

from sasi.transfer import to_device


def test_to_device_casts_and_keeps_values_on_the_host():
    t = torch.arange(6).reshape(2, 3)
    out = to_device(t, "cpu", torch.float32)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and torch.equal(out, t.float())
    assert to_device(t, None).device == t.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_non_blocking_copies_arrive_intact_behind_queued_work():
    big = torch.randn(4096, 4096, device="cuda")
    for _ in range(10):
        big = big @ big / 64  # queue GPU work the copy must not wait for, nor overtake wrongly
    hosts = [torch.full((3, 3), float(i)) for i in range(50)]
    outs = [to_device(h, "cuda") for h in hosts]
    del hosts  # the pinned staging buffers must outlive the copies
    torch.cuda.synchronize()
    assert all(torch.equal(o.cpu(), torch.full((3, 3), float(i))) for i, o in enumerate(outs))
