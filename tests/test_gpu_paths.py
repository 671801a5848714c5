"""GPU paths of rcs against their CPU / fp32 references (marked ``gpu``: skipped without CUDA).

Each test states its tolerance. The fp32 references run with TF32 off (PyTorch's default lets
cuDNN convolutions use TF32 on Ampere and later), so "fp32" means fp32.

- bf16 autocast training steps (``train.amp=bf16``) vs fp32 (``train.amp=off``), two ACL PGD-3
  steps from the same initialisation (PGD-1 in the CPU dry run): per-step losses within 3%
  relative; the two weight updates point the same way (cosine >= 0.8) and have norms within 25%
  of each other. (At a random initialisation the NT-Xent gradient is a small difference of large
  terms, so bf16 rounding moves it by ~30% relative norm: cosine 0.90 with PGD-3, 0.96 without,
  measured with CPU autocast on a width-16 ResNet; the CPU dry run's width-8 model only gets
  cosine >= 0.5.)
- channels_last vs contiguous, and a ``torch.compile``'d step vs eager (fp32 both): losses within
  1e-3 relative, updates within 5e-2 relative norm (fp32 rounding differs by kernel; a PGD sign
  step can flip where an input gradient is ~0);
- per-sample head gradients (torch.func) and exact gains on the device vs on the CPU: within
  1e-4 (relative norm);
- the RCS selector on the device vs on the CPU (eps = 0, so the attack starts, drawn from each
  device's own generator, play no part; the augmentation is drawn on the CPU for both): at least
  90% of the picks equal, the validation RD of every round within 1e-3;
- retrieval: the exact-gain top-m (the retrieval of the default ``selection.gradients=exact``,
  in torch) on the device vs the CPU: same ids; a FAISS GPU flat index vs rcs's CPU retriever
  (skipped when faiss has no GPU support: "no faiss-gpu").

``RCS_GPU_TEST_DEVICE=cpu`` runs them on the CPU against the CPU (``bench/gpu_suite.sh
--dry-run`` does, to check the tests themselves before GPU time is spent); the compile test
then skips unless ``RCS_GPU_TEST_COMPILE=1``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

DEVICE = os.environ.get("RCS_GPU_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                       reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _true_fp32():
    """TF32 off for the fp32 references; restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float64 on the CPU."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


# ------------------------------------------------------------------------------ training steps
def _train(tmp: Path, *overrides: str) -> tuple[list[float], dict[str, torch.Tensor],
                                                dict[str, torch.Tensor]]:
    """Two ACL PGD-3 steps (PGD-1 in the CPU dry run) of a small dual-BN ResNet-18 on the
    device: (per-step losses, initial weights, final weights)."""
    from rcs.config import load_config
    from rcs.train.trainer import Trainer

    small = not DEVICE.startswith("cuda")  # the CPU dry run: a smaller model and batch
    cfg = load_config(None, [
        f"out_dir={tmp}", "data.name=synthetic", f"data.synthetic_size={32 if small else 128}",
        "data.val_fraction=0", "model.arch=resnet18", f"model.width={8 if small else 32}",
        f"model.blocks={[1, 1, 1, 1] if small else [2, 2, 2, 2]}", "model.head_dim=64",
        "train.epochs=1", f"train.batch_size={16 if small else 64}",
        f"train.attack.steps={1 if small else 3}",
        "train.lr=0.5", "train.lr_warmup_epochs=0", "selection.method=full", f"device={DEVICE}",
        "train.log_every=1", "train.checkpoint_every=1000", "seed=3", *overrides])
    trainer = Trainer(cfg, resume="none")
    before = {k: v.detach().float().cpu().clone() for k, v in trainer.model.state_dict().items()
              if v.is_floating_point()}
    trainer.fit()
    after = {k: v.detach().float().cpu() for k, v in trainer.model.state_dict().items()
             if v.is_floating_point()}
    lines = (tmp / "metrics.jsonl").read_text().splitlines()
    losses = [r["loss"] for r in map(json.loads, lines) if r.get("event") == "step"]
    assert len(losses) == 2
    return losses, before, after


def _compare(ref: tuple, got: tuple, loss_rtol: float, update_rtol: float | None = None,
             min_cos: float | None = None, norm_ratio: float | None = None) -> None:
    (l_ref, b_ref, a_ref), (l_got, b_got, a_got) = ref, got
    for k in b_ref:
        torch.testing.assert_close(b_got[k], b_ref[k], rtol=0, atol=0)  # same initial weights
    np.testing.assert_allclose(l_got, l_ref, rtol=loss_rtol)
    ks = [k for k in a_ref if "running" not in k and "num_batches" not in k]
    d_ref = torch.cat([(a_ref[k] - b_ref[k]).flatten() for k in ks])
    d_got = torch.cat([(a_got[k] - b_got[k]).flatten() for k in ks])
    assert d_ref.norm() > 0
    if update_rtol is not None:
        assert _rel(d_got, d_ref) <= update_rtol, f"update differs by {_rel(d_got, d_ref):.2e}"
    if min_cos is not None:
        cos = float(torch.nn.functional.cosine_similarity(d_got.double(), d_ref.double(), 0))
        assert cos >= min_cos, f"updates' cosine {cos:.3f} < {min_cos}"
    if norm_ratio is not None:
        r = float(d_got.norm() / d_ref.norm())
        assert 1 / norm_ratio <= r <= norm_ratio, f"update norms differ by a factor {r:.3f}"


def test_bf16_autocast_steps_match_fp32(tmp_path):
    ref = _train(tmp_path / "fp32", "train.amp='off'", "train.channels_last=false")
    got = _train(tmp_path / "bf16", "train.amp=bf16", "train.channels_last=false")
    _compare(ref, got, loss_rtol=3e-2, min_cos=0.8 if DEVICE.startswith("cuda") else 0.5,
             norm_ratio=1.25)


def test_channels_last_steps_match_contiguous(tmp_path):
    ref = _train(tmp_path / "nchw", "train.amp='off'", "train.channels_last=false")
    got = _train(tmp_path / "nhwc", "train.amp='off'", "train.channels_last=true")
    _compare(ref, got, loss_rtol=1e-3, update_rtol=5e-2)


def test_compiled_step_matches_eager(tmp_path):
    if not DEVICE.startswith("cuda") and os.environ.get("RCS_GPU_TEST_COMPILE") != "1":
        pytest.skip("torch.compile on the CPU is slow here (RCS_GPU_TEST_COMPILE=1 runs it)")
    ref = _train(tmp_path / "eager", "train.amp='off'", "train.channels_last=false")
    got = _train(tmp_path / "compiled", "train.amp='off'", "train.channels_last=false",
                 "train.compile=true")
    _compare(ref, got, loss_rtol=1e-3, update_rtol=5e-2)


# ------------------------------------------------------------------------------ selection
def _head_and_feats(n: int = 48, dim: int = 64):
    from rcs.config.schema import ModelConfig
    from rcs.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", width=8, blocks=[1, 1], head_dim=32))
    head = model.head
    for m in head.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    f_dim = next(m for m in head.modules() if isinstance(m, torch.nn.Linear)).in_features
    feats = torch.randn(n, 4, f_dim, generator=torch.Generator().manual_seed(1))
    return head, feats


def test_per_sample_head_grads_and_gains_device_equal_cpu():
    from rcs.selection.per_sample import (
        HeadFn,
        Objective,
        per_sample_gains,
        per_sample_grads,
        unflatten,
    )

    head, feats = _head_and_feats()
    obj = Objective("acl")
    h_cpu, h_dev = HeadFn(head, device="cpu"), HeadFn(head, device=DEVICE)
    g_cpu = per_sample_grads(obj, h_cpu, feats, chunk=16)
    g_dev = per_sample_grads(obj, h_dev, feats.to(DEVICE), chunk=16)
    assert g_dev.device.type == torch.device(DEVICE).type
    assert _rel(g_dev, g_cpu) <= 1e-4
    q = torch.randn(h_cpu.dim, generator=torch.Generator().manual_seed(2))
    gain_cpu = per_sample_gains(obj, h_cpu, feats, unflatten(h_cpu, q))
    gain_dev = per_sample_gains(obj, h_dev, feats.to(DEVICE), unflatten(h_dev, q.to(DEVICE)))
    assert _rel(gain_dev, gain_cpu) <= 1e-4
    torch.testing.assert_close(gain_cpu.double(), (g_cpu.double() @ q.double()),
                               rtol=1e-3, atol=1e-5)


def test_exact_gain_retrieval_device_equals_cpu():
    from rcs.selection.gains import ExactGains
    from rcs.selection.per_sample import HeadFn, Objective
    from rcs.selection.store import RowSink

    head, feats = _head_and_feats(n=64)
    sink = RowSink(len(feats), None, np.float32)
    sink.put(np.arange(len(feats)), feats.flatten(1))
    store = sink.finish()
    obj = Objective("acl")
    q = np.random.default_rng(3).standard_normal(HeadFn(head).dim).astype(np.float32)
    excluded = np.zeros(len(feats), dtype=bool)
    excluded[::5] = True
    out = {}
    for dev in ("cpu", DEVICE):
        retr = ExactGains(obj, HeadFn(head, device=dev), store, len(feats), 16, device=dev)
        out[dev] = retr.search(q, 10, excluded)
    np.testing.assert_array_equal(out[DEVICE][0], out["cpu"][0])
    np.testing.assert_allclose(out[DEVICE][1], out["cpu"][1], rtol=1e-4, atol=1e-6)


def test_rcs_selector_device_equals_cpu():
    from rcs import RCSSelector
    from rcs.config.schema import ModelConfig
    from rcs.data import ImageDataset, train_val_split
    from rcs.models import build_model
    from rcs.selection import SelectionContext

    n = 96
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", width=8, blocks=[1, 1], head_dim=32))
    rng = np.random.default_rng(0)
    ds = ImageDataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
    cand, val = train_val_split(n, 0.1, 0)
    out = {}
    for dev in ("cpu", DEVICE):
        sel = RCSSelector(None, candidate_batch=32, rounds=4, eps=0.0, amp="off",
                          val_attack_start="uniform")
        ctx = SelectionContext(ds, cand, val, 0.25, seed=1, model=copy.deepcopy(model).to(dev),
                               device=dev, epoch=2)
        out[dev] = sel.select(ctx)
    a, b = out["cpu"], out[DEVICE]
    assert len(a) == len(b) == round(0.25 * len(cand))
    same = len(np.intersect1d(a.indices, b.indices)) / len(a)
    assert same >= 0.9, f"only {same:.0%} of the picks agree"
    np.testing.assert_allclose(b.meta["rd_per_round"], a.meta["rd_per_round"], rtol=1e-3)


def test_faiss_gpu_retrieval_equals_cpu():
    try:
        import faiss
    except ImportError:
        pytest.skip("no faiss-gpu (faiss not installed)")
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        pytest.skip("no faiss-gpu (faiss without GPU support)")
    from rcs.selection.retrieval import Retriever, exact_top_m
    from rcs.selection.store import GradientStore

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((5000, 64)).astype(np.float16)
    store = GradientStore.create(len(rows), 64, None)
    store.write(0, rows)
    q = rng.standard_normal(64).astype(np.float32)
    ids_cpu, s_cpu = Retriever(store, "flat").search(q, 50)
    index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, faiss.IndexFlatIP(64))
    index.add(rows.astype(np.float32))
    s_gpu, ids_gpu = index.search(q[None], 50)
    np.testing.assert_array_equal(np.sort(ids_gpu[0]), np.sort(ids_cpu))
    np.testing.assert_allclose(np.sort(s_gpu[0]), np.sort(s_cpu), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(exact_top_m(rows, q, 50)[0], ids_cpu)
