"""Host → device copies: same values and dtype as ``.to``; non-blocking from pinned memory on CUDA; volumes streamed."""

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


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])
def test_memory_mapped_volume_streams_to_the_device_slab_by_slab(tmp_path, monkeypatch, device):
    import importlib

    import numpy as np

    from sasi.errors import SasiError
    from sasi.io import read_mrc, write_mrc

    segment = importlib.import_module("sasi.detect.segment")  # the module (sasi.detect.segment is also a function)
    values = np.random.default_rng(0).normal(size=(37, 20, 24)).astype(np.float32)
    tomo = read_mrc(write_mrc(tmp_path / "t.mrc", values, 10.0), mmap=True)
    monkeypatch.setattr(segment, "SLAB_BYTES", 5 * 20 * 24 * 4)  # 8 slabs, the last one short
    out = segment.upload(tomo.data, device)
    assert out.device.type == device and torch.equal(out.cpu(), torch.from_numpy(values))
    normalised = segment.normalise_on(tomo.data, device, source="t.mrc").cpu().numpy()
    np.testing.assert_allclose(normalised, segment.normalise(values), rtol=1e-4, atol=1e-5)  # std: N − 1 vs N
    values[3, 4, 5] = np.inf
    with pytest.raises(SasiError, match="t.mrc: volume contains 1 NaN/inf voxels"):
        segment.normalise_on(values, device, source="t.mrc")
