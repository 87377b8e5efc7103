#!/usr/bin/env python3
"""Golden fixture for the `toy` model (src/models/toy.rs): the engine's end-to-end test network.

Writes tests/fixtures/toy/{weights,input,logits}.safetensors. Deterministic (fixed seed, CPU).

The network, input [B, 3, 32, 32] -> logits [B, 10]:
  stem:   conv 3x3 s2 p1 3->16 (+bias), BatchNorm(16) (inference), GELU       -> [B, 16, 16, 16]
  tokens: channel-last [B, 16*16, 16]
  blocks (DEPTH of them, Swin-style, no shift):
          x = x + proj(window_attention(norm1(x)))   4x4 windows, 2 heads of d=8,
              learned relative position bias table [(2*4-1)^2, heads]
          x = x + fc2(GELU(fc1(norm2(x))))           16 -> 32 -> 16
  norm (LayerNorm), mean over tokens, head Linear 16 -> 10.

Every parameter is perturbed away from its default (non-zero biases, non-identity norms,
non-trivial BatchNorm running statistics, a large relative-position table) so that a wrong
layout or a skipped term shows up in the logits. The golden logits come from the float64
model (cast to f32); the float32 model is run as well and its distance to the float64 one is
printed as the noise floor an f32 engine can be held to.

Tensor names are what this PyTorch module's state_dict produces; `num_batches_tracked` (int64,
unused at inference) is left out, and `relative_position_index` is a non-persistent buffer
(the Rust side recomputes it), so the checkpoint holds only float tensors.

Usage: python3 tools/make_toy_fixture.py [--out tests/fixtures/toy]
"""

import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

SEED = 20240611
BATCH = 2
IMAGE = 32
DIM = 16
HEADS = 2
WINDOW = 4
MLP_HIDDEN = 32
DEPTH = 2
CLASSES = 10


def relative_position_index(ws: int) -> torch.Tensor:
    """Swin's index: [ws*ws, ws*ws] entries into the [(2ws-1)^2, heads] table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, DIM, 3, stride=2, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(DIM, eps=1e-5)

    def forward(self, x):
        return F.gelu(self.bn(self.conv(x)))


class WindowAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.head_dim = DIM // HEADS
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * WINDOW - 1) ** 2, HEADS))
        self.register_buffer("relative_position_index", relative_position_index(WINDOW), persistent=False)

    def forward(self, x):  # x: [B * windows, N, C]
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, HEADS, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(n, n, HEADS).permute(2, 0, 1).unsqueeze(0)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DIM, MLP_HIDDEN)
        self.fc2 = nn.Linear(MLP_HIDDEN, DIM)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def window_partition(x, ws):  # [B, H, W, C] -> [B * H/ws * W/ws, ws*ws, C]
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows, ws, b, h, w):
    c = windows.shape[-1]
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, eps=1e-5)
        self.attn = WindowAttention()
        self.norm2 = nn.LayerNorm(DIM, eps=1e-5)
        self.mlp = Mlp()

    def forward(self, x, h, w):  # x: [B, H*W, C]
        b, _, c = x.shape
        y = window_partition(self.norm1(x).view(b, h, w, c), WINDOW)
        y = window_reverse(self.attn(y), WINDOW, b, h, w).reshape(b, h * w, c)
        x = x + y
        return x + self.mlp(self.norm2(x))


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.blocks = nn.ModuleList([Block() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM, eps=1e-5)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, x):
        x = self.stem(x)
        b, c, h, w = x.shape
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        for blk in self.blocks:
            x = blk(x, h, w)
        return self.head(self.norm(x).mean(dim=1))


def perturb(model: nn.Module, gen: torch.Generator):
    """Moves every parameter and running statistic off its default value."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("relative_position_bias_table"):
                p.copy_(noise)  # O(1) biases: the softmax must feel them
            elif "norm" in name or name.startswith("stem.bn"):
                p.copy_((1.0 + 0.2 * noise) if name.endswith("weight") else 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                fan_in = p[0].numel()
                p.copy_(noise / fan_in ** 0.5)
        model.stem.bn.running_mean.copy_(0.3 * torch.randn(DIM, generator=gen))
        model.stem.bn.running_var.copy_(0.5 + torch.rand(DIM, generator=gen))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "toy"))
    args = parser.parse_args()

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = Toy().eval()
    perturb(model, gen)
    x = torch.randn(BATCH, 3, IMAGE, IMAGE, generator=gen)

    with torch.no_grad():
        logits32 = model(x)
        logits64 = model.double()(x.double())
    model.float()
    gap = (logits32.double() - logits64).abs().max().item()
    print(f"logits [{BATCH}, {CLASSES}], |logits| max {logits64.abs().max().item():.4f}; "
          f"float32 vs float64 model: max abs diff {gap:.3e}")
    assert gap < 1e-5, "the float32 model drifts from float64: the fixture would be too noisy"

    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    os.makedirs(args.out, exist_ok=True)
    save_file(state, os.path.join(args.out, "weights.safetensors"), metadata={"source": f"tools/make_toy_fixture.py, seed {SEED}"})
    save_file({"input": x.contiguous()}, os.path.join(args.out, "input.safetensors"))
    save_file({"logits": logits64.float().contiguous()}, os.path.join(args.out, "logits.safetensors"))
    for name in ("weights", "input", "logits"):
        path = os.path.join(args.out, f"{name}.safetensors")
        print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")
    print("tensors:", ", ".join(f"{k} {list(v.shape)}" for k, v in state.items()))


if __name__ == "__main__":
    main()
