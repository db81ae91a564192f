"""Plain PyTorch eager model of SPEC §1 (float32), the peer for bench/vs_pytorch.sh.

Idiomatic eager PyTorch 1.13 (no torch.compile, no scaled_dot_product_attention — 1.13 has
neither): nn.Linear without bias, RMSNorm, per-head QK-norm, rotate-half RoPE with cached
cos/sin, batched attention softmax(QKᵀ/√hd + causal mask)·V (GQA via repeat_interleave of
K/V when n_kv_heads < n_heads), SwiGLU, tied embeddings, CE + z-loss. The optimizer is
torch.optim.AdamW with weight decay on matrices only, like retort.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def default_d_ff(d):
    # SPEC §1: 8/3·d rounded up to a multiple of 64
    return ((8 * d + 2) // 3 + 63) // 64 * 64


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.H, self.Hkv, self.hd = c["d_model"], c["n_heads"], c["n_kv_heads"], c["head_dim"]
        self.q_proj = nn.Linear(d, self.H * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.Hkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.Hkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.H * self.hd, d, bias=False)
        self.qk_norm = c["qk_norm"]
        self.sdpa = c.get("sdpa", False)
        if self.qk_norm:
            self.q_norm = RMSNorm(self.hd, c["norm_eps"])
            self.k_norm = RMSNorm(self.hd, c["norm_eps"])

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd)
        k = self.k_proj(x).view(B, T, self.Hkv, self.hd)
        v = self.v_proj(x).view(B, T, self.Hkv, self.hd)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, hd]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.Hkv != self.H:
            rep = self.H // self.Hkv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if self.sdpa:  # fused (flash) attention: the strong GPU peer
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd)) + mask
            a = torch.matmul(torch.softmax(s, dim=-1), v)                # [B, H, T, hd]
        return self.o_proj(a.transpose(1, 2).reshape(B, T, self.H * self.hd))


class MLP(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["d_model"], c["norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["d_model"], c["norm_eps"])
        self.mlp = MLP(c["d_model"], c["d_ff"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        V, d, L, T, hd = c["vocab_size"], c["d_model"], c["n_layers"], c["seq_len"], c["head_dim"]
        self.embed_tokens = nn.Embedding(V, d)
        self.layers = nn.ModuleList(Block(c) for _ in range(L))
        self.norm = RMSNorm(d, c["norm_eps"])
        self.lm_head = None if c["tie_embeddings"] else nn.Linear(d, V, bias=False)
        # RoPE tables (rotate-half: pairs (i, i+hd/2)) and the additive causal mask, cached.
        inv_freq = c["rope_theta"] ** (-2.0 * torch.arange(hd // 2, dtype=torch.float64) / hd)
        angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
        angle = torch.cat((angle, angle), dim=-1)
        self.register_buffer("cos", angle.cos().float(), persistent=False)
        self.register_buffer("sin", angle.sin().float(), persistent=False)
        mask = torch.full((T, T), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)
        self._init(L)

    def _init(self, L):
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, inputs, targets, z_loss):
        B, T = inputs.shape
        x = self.embed_tokens(inputs)
        for layer in self.layers:
            x = layer(x, self.cos[:T], self.sin[:T], self.mask[:T, :T])
        x = self.norm(x)
        head = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, head).view(B * T, -1)
        lse = torch.logsumexp(logits, dim=-1)
        ce = (lse - logits.gather(1, targets.reshape(B * T, 1)).squeeze(1)).mean()
        return ce + z_loss * (lse * lse).mean()


def make_optimizer(model, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=True):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=foreach)
