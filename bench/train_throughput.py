"""Training throughput: one ACL epoch with rcs's trainer vs the published recipe done naively.

Both sides train the same dual-BN model on the same images (the real CIFAR-10 subset,
5,551 train images) with the same ACL step (PGD-K contrastive attack on both views, then the
dual-stream NT-Xent loss and a LARS step), in one process, one after the other:

- ours:  ``rcs.train.Trainer`` (on-device batched augmentation, input-only attack gradients,
         bf16 autocast and channels_last on GPU);
- naive: the reference implementation's structure re-implemented here: per-sample PIL
         augmentation in DataLoader workers, fp32, contiguous NCHW, the attack back-propagating
         into the parameters too, NT-Xent with the subtract-e^{1/t} diagonal trick.

``--repeats N`` alternates the two sides N times (ours, naive, ours, ...) and reports medians
with the spread (min-max). Prints images/s of each and, as its last line,
``throughput_ratio: X`` (median ours / median naive); ``--json PATH`` also writes the figures.

  python bench/train_throughput.py                      # small ResNet on CPU
  python bench/train_throughput.py --arch resnet18 --width 64 --device cuda --limit 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_NPZ = ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar10_subset.npz"


# ----------------------------------------------------------------------------- naive side
def pil_augment(img: Image.Image, rng: random.Random) -> torch.Tensor:
    """RandomResizedCrop(32, (0.1, 1), bicubic), flip, ColorJitter(.4,.4,.4,.1) p=.8, gray p=.2."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(0.1, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:
        cw, ch, x0, y0 = w, h, 0, 0
    img = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.8:
        ops = [lambda im: ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4)),
               lambda im: ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 1.4)),
               lambda im: ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.4)),
               lambda im: _hue(im, rng.uniform(-0.1, 0.1))]
        rng.shuffle(ops)
        for op in ops:
            img = op(img)
    if rng.random() < 0.2:
        img = img.convert("L").convert("RGB")
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


def _hue(img: Image.Image, shift: float) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    h = h.point(lambda p: (p + int(shift * 255)) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = random.Random(torch.initial_seed() + i)
        img = Image.fromarray(self.images[i])
        return torch.stack([pil_augment(img, rng), pil_augment(img, rng)])


def nt_xent_published(z: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """The published form: cosine matrix, diagonal removed by subtracting e^{1/t}."""
    n = z.shape[0]
    norm = z.norm(dim=1, keepdim=True)
    sim = (z @ z.t()) / torch.clamp(norm * norm.t(), min=1e-8)
    e = torch.exp(sim / t)
    pos = torch.arange(n, device=z.device) ^ 1
    num = e[torch.arange(n), pos]
    den = e.sum(1) - math.exp(1 / t)
    return -torch.log(num / den).mean()


def naive_epoch(model, images, args, device) -> tuple[float, int]:
    from rcs.train.optim import LARS

    opt = LARS(model.parameters(), lr=0.5, weight_decay=1e-6)
    loader = torch.utils.data.DataLoader(PairDataset(images), batch_size=args.batch_size,
                                         shuffle=True, num_workers=args.workers, drop_last=False,
                                         persistent_workers=False)
    eps, alpha = 8 / 255, 2 / 255
    n, t0 = 0, time.perf_counter()
    for pair in loader:
        x = pair.view(-1, *pair.shape[2:]).to(device)
        model.eval()  # the attack, with parameter gradients left on (as published)
        delta = torch.empty_like(x).uniform_(-eps, eps)
        for _ in range(args.steps):
            delta.requires_grad_(True)
            loss = nt_xent_published(model(x + delta, "pgd"))
            model.zero_grad()
            loss.backward()
            delta = (delta + alpha * delta.grad.sign()).clamp(-eps, eps)
            delta = ((x + delta).clamp(0, 1) - x).detach()
        model.train()
        loss = (nt_xent_published(model(x, "normal"))
                + nt_xent_published(model(x + delta, "pgd"))) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += pair.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, n


# ----------------------------------------------------------------------------- our side
def ours_epoch(args, out: Path) -> tuple[float, int]:
    from rcs.config import load_config
    from rcs.train.trainer import Trainer
    from rcs.utils.metrics import read_jsonl

    cfg = load_config(None, [
        f"out_dir={out}", "data.name=npz", f"data.root={args.npz}", "data.val_fraction=0",
        f"data.limit={args.limit}", f"model.arch={args.arch}", f"model.width={args.width}",
        f"model.blocks={args.blocks}", "train.epochs=1", f"train.batch_size={args.batch_size}",
        f"train.attack.steps={args.steps}", "train.lr=0.5", "selection.method=full",
        f"device={args.device}", "train.log_every=1000000", "augment.interpolation=bicubic",
        f"train.channels_last={args.device != 'cpu'}"])
    summary = Trainer(cfg, resume="none").fit()
    epoch = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("event") == "epoch"][-1]
    return epoch["seconds"], summary["samples_seen"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--npz", default=str(DEFAULT_NPZ), help="npz with x_train (uint8 NHWC)")
    p.add_argument("--limit", type=int, default=1024, help="images per epoch (0 = all 5,551)")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--blocks", default="[1,1,1,1]", help="blocks per stage, e.g. [2,2,2,2]")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="PGD steps of the training attack")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="DataLoader workers of the naive side (the reference uses 4)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=1, help="epochs of each side, interleaved")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args()
    device = torch.device(args.device)

    from rcs.config import load_config
    from rcs.data import build_dataset
    from rcs.models import build_model

    cfg = load_config(None, ["data.name=npz", f"data.root={args.npz}", f"data.limit={args.limit}",
                             f"model.arch={args.arch}", f"model.width={args.width}",
                             f"model.blocks={args.blocks}"])
    images = np.ascontiguousarray(build_dataset(cfg.data).images)
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device)
    print(f"device={device} arch={args.arch} width={args.width} blocks={args.blocks} "
          f"images={len(images)} batch={args.batch_size} pgd_steps={args.steps} "
          f"threads={torch.get_num_threads()}")
    ours, naive = [], []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t_ours, n_ours = ours_epoch(args, Path(tmp))
        t_naive, n_naive = naive_epoch(model, images, args, device)
        ours.append(n_ours / t_ours)
        naive.append(n_naive / t_naive)
        print(f"repeat {r + 1}: ours {n_ours} images in {t_ours:.2f} s = {ours[-1]:.1f} "
              f"images/s; naive {n_naive} images in {t_naive:.2f} s = {naive[-1]:.1f} images/s",
              flush=True)
    mo, mn = float(np.median(ours)), float(np.median(naive))
    print(f"ours : {mo:.1f} images/s [{min(ours):.1f}-{max(ours):.1f}]")
    print(f"naive: {mn:.1f} images/s [{min(naive):.1f}-{max(naive):.1f}]")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "ours_images_per_s": mo, "naive_images_per_s": mn, "throughput_ratio": mo / mn,
            "ours_all": ours, "naive_all": naive, "images": len(images),
            "settings": vars(args)}, indent=2))
    print(f"throughput_ratio: {mo / mn:.3f}")

if __name__ == "__main__":
    main()
