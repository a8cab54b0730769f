"""SAM's two-way transformer (the core of the mask decoder).

Prompt tokens ``(B, N_tokens, C)`` and image tokens ``(B, 64 * 64, C)``
attend to each other in both directions: tokens to image, image to tokens.
Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`.

Parameter names match Meta's ``segment_anything.modeling.transformer``.
"""

from __future__ import annotations

from typing import Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLPBlock


class TwoWayTransformer(nn.Module):
    """A stack of :class:`TwoWayAttentionBlock` and a final token-to-image attention.

    Parameters
    ----------
    depth:
        Number of two-way blocks (2).
    embedding_dim:
        Token width (256).
    num_heads:
        Attention heads (8).
    mlp_dim:
        Hidden width of the token MLPs (2048).
    activation:
        MLP activation class.
    attention_downsample_rate:
        Cross-attention works at ``embedding_dim / rate`` internal width.
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor) -> Tuple[Tensor, Tensor]:
        """Run the transformer.

        Parameters
        ----------
        image_embedding:
            ``(B, C, h, w)`` image features (plus dense prompt embedding).
        image_pe:
            ``(B or 1, C, h, w)`` positional encoding of the feature grid.
        point_embedding:
            ``(B, N_tokens, C)`` output tokens followed by prompt tokens.

        Returns
        -------
        queries:
            ``(B, N_tokens, C)`` processed tokens.
        keys:
            ``(B, h * w, C)`` processed image tokens.
        """
        # token-major copies: every linear layer below then runs on contiguous rows
        if image_embedding.shape[0] > 1 and image_embedding.stride(0) == 0:
            # one image for every prompt (expanded): the first block reads its image tokens once, not per prompt
            image_embedding = image_embedding[:1]
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()  # (B or 1, hw, C)
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe)
        q = queries + point_embedding
        k = keys + key_pe
        queries = queries + self.final_attn_token_to_image(q=q, k=k, v=keys)
        queries = self.norm_final_attn(queries)
        return queries, keys


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image attention, token MLP, image-to-token attention.

    Each step is residual and followed by a LayerNorm. The first block of the
    stack skips the positional encoding in its self-attention (and its
    residual), as in the reference.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> Tuple[Tensor, Tensor]:
        """``queries`` ``(B, N, C)``, ``keys`` ``(B or 1, hw, C)`` -> updated ``(queries, keys (B, hw, C))``.

        ``keys`` of batch 1 with ``B > 1``: the same image tokens for every
        prompt (the first block), used without being copied per prompt.
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe  # keys are unchanged until the end of the block: reused below
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


# Keys from which the few-queries form of attention (see Attention._few_queries) pays off.
_FOLD_MIN_KEYS = 256


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections.

    The projections map ``embedding_dim`` to ``embedding_dim / downsample_rate``
    (split into ``num_heads``); ``out_proj`` maps back to ``embedding_dim``.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: Tensor) -> Tensor:
        """``(B, N, D)`` -> ``(B, heads, N, D / heads)``."""
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``q`` ``(B, Nq, C)``, ``k``/``v`` ``(B, Nk, C)`` -> ``(B, Nq, C)``.

        In the folded cases (below) one side may have batch 1 for all ``B``
        (the image tokens shared by every prompt of a batch).
        """
        b, nq, _ = q.shape
        nk = k.shape[1]
        if q.shape[0] != k.shape[0]:
            if nk * self.num_heads < self.internal_dim and nq >= _FOLD_MIN_KEYS and q.shape[0] == 1:
                return self._few_keys(q, k, v)
            if nq * self.num_heads < self.internal_dim and nk >= _FOLD_MIN_KEYS and k.shape[0] == 1:
                return self.out_proj(self._few_queries(q, k, v).transpose(1, 2).reshape(b, nq, self.internal_dim))
            raise ValueError(f"batch of queries {q.shape[0]} does not match keys {k.shape[0]}")
        if nk * self.num_heads < self.internal_dim and nq >= _FOLD_MIN_KEYS:
            return self._few_keys(q, k, v)
        if nq * self.num_heads < self.internal_dim and nk >= _FOLD_MIN_KEYS:
            out = self._few_queries(q, k, v)
        else:
            out = F.scaled_dot_product_attention(
                self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
            )
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.internal_dim))

    def _few_keys(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attention of many queries over a few keys, projections folded into the keys; returns ``(B, Nq, C)``.

        With ``k_h = W_k,h k + b_k,h`` and ``v_h = W_v,h v + b_v,h`` the
        projected keys and values of head ``h`` (a few rows each), and ``s``
        the softmax scale:

        * logit ``i, j`` of head ``h`` is ``(W_q,h q_i + b_q,h) . k_h,j s =
          q_i . (s W_q,h^T k_h,j) + s b_q,h . k_h,j``: the queries enter in
          their input width, against ``heads x Nk`` folded keys, in one
          matrix product;
        * the output ``sum_h W_o,h (sum_j a_hij v_h,j) + b_o`` is
          ``sum_(h, j) a_hij (W_o,h v_h,j) + b_o``: one more product, with the
          values already through ``out_proj``.

        For the decoder's image-to-tokens attention (4096 image tokens over 7
        tokens x 8 heads) this replaces the ``4096 x 256 x 128`` query and
        output projections and a 4096-query attention by two
        ``4096 x 256 x 56`` products.
        """
        nq, c = q.shape[1:]
        b, nk = k.shape[:2]
        heads = self.num_heads
        hd = self.internal_dim // heads
        kh = self.k_proj(k).view(b, nk, heads, hd)
        vh = self.v_proj(v).view(b, nk, heads, hd)
        scale = hd**-0.5
        w_q = self.q_proj.weight.view(heads, hd, c)
        keys = torch.einsum("bjhd,hdc->bchj", kh, w_q).reshape(b, c, heads * nk) * scale
        bias = torch.einsum("bjhd,hd->bhj", kh, self.q_proj.bias.view(heads, hd)).reshape(b, 1, heads * nk) * scale
        w_o = self.out_proj.weight.view(c, heads, hd)
        values = torch.einsum("bjhd,chd->bhjc", vh, w_o).reshape(b, heads * nk, c)
        # softmax over the few keys, spelled out: torch's softmax is ~3x slower on a last dimension of 7
        if q.shape[0] == 1 and b > 1:
            # The same queries for every batch element: projected once (Nq x C x C/2), the logits are then
            # per head (Nq x hd) @ (hd x B*Nk), 1/16 of the folded product; the output stays folded.
            qh = self.q_proj(q[0]).view(nq, heads, hd).transpose(0, 1)  # (heads, Nq, hd)
            kt = kh.permute(2, 3, 0, 1).reshape(heads, hd, b * nk)
            logits = torch.bmm(qh, kt).mul_(scale).view(heads, nq, b, nk).permute(2, 1, 0, 3).contiguous()
            attn = logits.view(b, nq, heads, nk)
            attn.sub_(attn.amax(dim=-1, keepdim=True)).exp_()
            attn.div_(attn.sum(dim=-1, keepdim=True))
            return torch.baddbmm(self.out_proj.bias.view(1, 1, c), attn.view(b, nq, heads * nk), values)
        logits = torch.baddbmm(bias, q, keys).view(b, nq, heads, nk)
        attn = (logits - logits.amax(dim=-1, keepdim=True)).exp_()
        attn = attn / attn.sum(dim=-1, keepdim=True)
        return torch.baddbmm(self.out_proj.bias.view(1, 1, c), attn.view(b, nq, heads * nk), values)

    def _few_queries(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attention of a few queries over many keys without projecting the keys.

        For head ``h`` with projections ``(W_q, b_q)``, ``(W_k, b_k)``, ``(W_v, b_v)``:

        * logit ``i, j`` is ``(W_q q_i + b_q) . (W_k k_j + b_k) = q'_i . k_j + const_i``
          with ``q'_i = W_k^T (W_q q_i + b_q)``; the constant does not change the
          softmax over ``j``;
        * the output is ``sum_j a_ij (W_v v_j + b_v) = W_v (sum_j a_ij v_j) + b_v``
          because the weights sum to 1.

        So the keys and values enter in their input width, and the heads can be
        stacked as extra queries of one attention call (they share ``k`` and
        ``v``). For the decoder's tokens-to-image attention (7 tokens x 8 heads
        over 4096 image tokens) this replaces two ``4096 x 256 x 128``
        projections by attention over 56 queries. Returns ``(B, heads, Nq, hd)``.
        """
        b, nq, c = q.shape
        heads = self.num_heads
        hd = self.internal_dim // heads
        qh = self.q_proj(q).view(b, nq, heads, hd)
        if k.shape[0] == 1 and b > 1:
            # The same keys and values for every batch element: projected once, not folded (the fold saves
            # per-element projections; here there are none), one attention of all B x Nq queries per head.
            kh = self._heads(self.k_proj(k))  # (1, heads, Nk, hd)
            vh = self._heads(self.v_proj(v))
            queries = qh.permute(2, 0, 1, 3).reshape(1, heads, b * nq, hd)
            out = F.scaled_dot_product_attention(queries, kh, vh)  # (1, heads, B * Nq, hd)
            return out.view(heads, b, nq, hd).transpose(0, 1)
        w_k = self.k_proj.weight.view(heads, hd, c)
        q_folded = torch.einsum("bnhd,hdc->bhnc", qh, w_k).reshape(b, 1, heads * nq, c)
        mixed = F.scaled_dot_product_attention(
            q_folded, k.unsqueeze(1), v.unsqueeze(1), scale=hd**-0.5
        )  # (B, 1, heads * Nq, C): per head and query, the attention-weighted input values
        w_v = self.v_proj.weight.view(heads, hd, c)
        out = torch.einsum("bhnc,hdc->bhnd", mixed.view(b, heads, nq, c), w_v)
        return out + self.v_proj.bias.view(1, heads, 1, hd)
