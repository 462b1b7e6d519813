"""Scalar potential networks for images: a small CPU convnet and the paper's UNet + ViT.

Both map a batch of images ``(B, C, H, W)`` to energies ``(B, 1)`` and have no time
input (Energy Matching learns one time-independent potential ``V_theta(x)``). They use
smooth activations (SiLU, GELU) and no batch statistics (no BatchNorm), so that
``-grad_x V`` is smooth and the energy of one image never depends on the others in
its batch; Energy Matching differentiates through ``grad_x V`` (double backward),
which every layer here supports.

- :class:`ConvPotential`: a few 3x3 convolutions with stride-2 downsampling, a flatten
  and a two-layer head; ``ConvPotential(1, 8)`` (the digits default) has 181,249
  parameters and runs comfortably on a CPU.
- :class:`UNetViTPotential`: the CIFAR-10 potential of the reference implementation's
  design: a UNet trunk (residual conv blocks with GroupNorm and SiLU, stride-2
  downsampling, nearest upsampling, skip connections) whose full-resolution feature map
  is cut into patches and read by a ViT head (pre-norm transformer encoder layers, a
  CLS token), then a linear map to a scalar, times ``output_scale`` (1000 in the
  reference). :func:`cifar10_potential` builds it at paper scale (about 50M
  parameters, see :data:`CIFAR10_POTENTIAL_DEFAULTS`).

Example:
    >>> import torch
    >>> net = ConvPotential(in_channels=1, image_size=8)
    >>> count_parameters(net)
    181249
    >>> x = torch.zeros(4, 1, 8, 8, requires_grad=True)
    >>> net(x).shape
    torch.Size([4, 1])
    >>> tiny = cifar10_potential(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
    ...                          groups=4, vit_dim=16, vit_depth=1, vit_heads=2)
    >>> tiny(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from energyflow.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "CIFAR10_POTENTIAL_DEFAULTS",
    "ConvPotential",
    "ResBlock",
    "UNetTrunk",
    "UNetViTPotential",
    "ViTHead",
    "cifar10_potential",
    "count_parameters",
]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters of ``module``.

    Args:
        module (nn.Module): any module.
        trainable_only (bool): count only parameters with ``requires_grad``.

    Returns:
        int: the total number of parameter entries.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _check_image_batch(x: Tensor, channels: int, size: int | None, who: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InvalidValueError(f"{who} expects images of shape (B, {channels}, H, W), got {shape}")
    if size is not None and (x.shape[2] != size or x.shape[3] != size):
        raise InvalidValueError(f"{who} was built for {size}x{size} images, got {x.shape[2]}x{x.shape[3]}")


class ConvPotential(nn.Module):
    """A small convolutional potential ``V(x)`` for low-resolution images on a CPU.

    Layout (every convolution 3x3 with padding 1, each followed by SiLU)::

        conv C -> h, conv h -> h                               (H x W)
        for i in 1..depth: conv (stride 2) -> h * min(2^(i-1), 2)  (H / 2^i)
        flatten -> Linear(., h) -> SiLU -> Linear(h, 1)

    Channels double once (at the second downsampling) and then stay at ``2 h``, so a
    large ``depth`` stays cheap.

    Args:
        in_channels (int): image channels ``C``.
        image_size (int): side ``H = W`` of the (square) images; must be divisible by
            ``2 ** depth``.
        hidden (int): base width ``h``.
        depth (int): number of stride-2 downsampling stages (>= 1).

    Shapes:
        input ``(B, C, H, W)``; output ``(B, 1)``.

    Example:
        >>> net = ConvPotential(3, 32, hidden=16, depth=3)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 1])
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        if in_channels < 1 or image_size < 1 or hidden < 1 or depth < 1:
            raise InvalidValueError(
                f"need positive in_channels, image_size, hidden and depth >= 1, got {in_channels}, "
                f"{image_size}, {hidden}, {depth}"
            )
        if image_size % (2**depth) != 0:
            raise InvalidValueError(
                f"image_size {image_size} must be divisible by 2**depth = {2 ** depth}; lower depth "
                f"(at most {max(1, (image_size & -image_size).bit_length() - 1)} for this size)"
            )
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
        ]
        ch = hidden
        for i in range(1, depth + 1):
            out = hidden * min(2 ** (i - 1), 2)
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.SiLU()]
            ch = out
        side = image_size // 2**depth
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(ch * side * side, hidden), nn.SiLU(), nn.Linear(hidden, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Energies of a batch of images: ``(B, C, H, W) -> (B, 1)``."""
        _check_image_batch(x, self.in_channels, self.image_size, "ConvPotential")
        return self.head(self.features(x))


class ResBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(SiLU(GN(conv(SiLU(GN(x))))))``.

    A 1x1 convolution maps the skip path when the channel count changes.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        groups (int): GroupNorm groups (must divide both channel counts).
        dropout (float): dropout before the second convolution.

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        for c in (in_channels, out_channels):
            if c % groups != 0:
                raise InvalidValueError(f"GroupNorm groups={groups} must divide the channel count {c}")
        self.block = nn.Sequential(
            nn.GroupNorm(groups, in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.GroupNorm(groups, out_channels), nn.SiLU(), nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.block(x)


class _Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetTrunk(nn.Module):
    """A UNet without time conditioning that returns a full-resolution feature map.

    DDPM-style layout: an input convolution; per level ``i`` (``len(channel_mults)``
    levels) ``num_res_blocks`` :class:`ResBlock` s to ``base_channels * mults[i]``
    channels, each output kept for a skip connection, then a stride-2 convolution
    (except at the last level); two middle blocks; on the way up ``num_res_blocks + 1``
    blocks per level, each reading the concatenation with one skip, then nearest
    upsampling + conv; finally GroupNorm, SiLU and a 3x3 convolution to
    ``out_channels``.

    Args:
        in_channels (int): image channels.
        base_channels (int): channels at the first level.
        channel_mults (Sequence[int]): channel multiplier per level.
        num_res_blocks (int): residual blocks per level on the way down.
        out_channels (int | None): channels of the returned map (default ``base_channels``).
        groups (int): GroupNorm groups.
        dropout (float): dropout inside residual blocks.

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` with ``H, W`` divisible by
        ``2 ** (len(channel_mults) - 1)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 128,
        channel_mults: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        out_channels: int | None = None,
        groups: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        mults = tuple(int(m) for m in channel_mults)
        if not mults or any(m < 1 for m in mults) or num_res_blocks < 1 or base_channels < 1:
            raise InvalidValueError(
                f"need non-empty positive channel_mults, num_res_blocks >= 1 and base_channels >= 1, got "
                f"{channel_mults}, {num_res_blocks}, {base_channels}"
            )
        self.num_levels = len(mults)
        self.out_channels = int(out_channels or base_channels)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        ch = base_channels
        for level, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(ch, base_channels * mult, groups, dropout))
                ch = base_channels * mult
                skip_channels.append(ch)
            if level != len(mults) - 1:
                self.down.append(_Downsample(ch))
                skip_channels.append(ch)
        self.middle = nn.Sequential(ResBlock(ch, ch, groups, dropout), ResBlock(ch, ch, groups, dropout))
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(ch + skip_channels.pop(), base_channels * mult, groups, dropout))
                ch = base_channels * mult
            if level != 0:
                self.up.append(_Upsample(ch))
        self.conv_out = nn.Sequential(
            nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, self.out_channels, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        factor = 2 ** (self.num_levels - 1)
        if x.dim() != 4 or x.shape[2] % factor or x.shape[3] % factor:
            raise InvalidValueError(
                f"UNetTrunk expects (B, C, H, W) with H and W divisible by {factor}, got {tuple(x.shape)}"
            )
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        h = self.middle(h)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1)) if isinstance(layer, ResBlock) else layer(h)
        return self.conv_out(h)


class ViTHead(nn.Module):
    """A vision-transformer readout from a feature map to one scalar per image.

    The map is cut into non-overlapping ``patch_size`` patches by a strided
    convolution, a learned CLS token and learned position embeddings are added, the
    tokens pass ``depth`` pre-norm :class:`torch.nn.TransformerEncoderLayer` s (GELU;
    attention runs on PyTorch's math kernel, the only one with a double backward,
    which training needs), and a final LayerNorm and linear layer read the CLS token (``pool="cls"``) or the
    mean of the patch tokens (``pool="mean"``).

    Args:
        in_channels (int): channels of the feature map.
        image_size (int): side of the (square) feature map.
        patch_size (int): patch side; must divide ``image_size``.
        dim (int): token width.
        depth (int): transformer layers.
        heads (int): attention heads (must divide ``dim``).
        mlp_ratio (float): MLP hidden width / ``dim``.
        dropout (float): dropout inside the transformer layers.
        pool (str): ``"cls"`` or ``"mean"``.

    Shapes:
        ``(B, in_channels, image_size, image_size) -> (B, 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 512,
        depth: int = 6,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        if image_size % patch_size != 0:
            raise InvalidValueError(f"patch_size {patch_size} must divide the feature map size {image_size}")
        if dim % heads != 0:
            raise InvalidValueError(f"heads={heads} must divide dim={dim}")
        if pool not in ("cls", "mean"):
            raise InvalidValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.pool = pool
        self.image_size = int(image_size)
        num_patches = (image_size // patch_size) ** 2
        self.patchify = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, num_patches + 1, dim))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim, heads, dim_feedforward=int(mlp_ratio * dim), dropout=dropout, activation="gelu",
                batch_first=True, norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, 1)

    def forward(self, h: Tensor) -> Tensor:
        if h.dim() != 4 or h.shape[2] != self.image_size or h.shape[3] != self.image_size:
            raise InvalidValueError(
                f"ViTHead expects (B, C, {self.image_size}, {self.image_size}) feature maps, "
                f"got {tuple(h.shape)}"
            )
        tokens = self.patchify(h).flatten(2).transpose(1, 2)  # (B, N, dim)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        # The math kernel: the fused CPU/GPU attention kernels have no double backward,
        # which Energy Matching needs (its loss differentiates grad_x V).
        with sdpa_kernel(SDPBackend.MATH):
            for layer in self.layers:
                tokens = layer(tokens)
        tokens = self.norm(tokens)
        pooled = tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)
        return self.out(pooled)


class UNetViTPotential(nn.Module):
    """The paper's CIFAR-10 potential: ``V(x) = output_scale * ViTHead(UNetTrunk(x))``.

    Args:
        in_channels (int): image channels.
        image_size (int): image side (square images).
        base_channels, channel_mults, num_res_blocks, groups, dropout: the
            :class:`UNetTrunk`; its output has ``trunk_out_channels`` channels (default
            ``base_channels``).
        patch_size, vit_dim, vit_depth, vit_heads, mlp_ratio, pool: the :class:`ViTHead`.
        output_scale (float): multiplies the scalar output (1000 in the reference).

    Shapes:
        ``(B, in_channels, image_size, image_size) -> (B, 1)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        base_channels: int = 128,
        channel_mults: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        groups: int = 32,
        dropout: float = 0.0,
        trunk_out_channels: int | None = None,
        patch_size: int = 4,
        vit_dim: int = 512,
        vit_depth: int = 6,
        vit_heads: int = 8,
        mlp_ratio: float = 4.0,
        pool: str = "cls",
        output_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.output_scale = float(output_scale)
        self.trunk = UNetTrunk(
            in_channels, base_channels, channel_mults, num_res_blocks, trunk_out_channels, groups, dropout
        )
        self.head = ViTHead(
            self.trunk.out_channels, image_size, patch_size, vit_dim, vit_depth, vit_heads, mlp_ratio,
            dropout, pool,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Energies of a batch of images: ``(B, C, H, W) -> (B, 1)``."""
        _check_image_batch(x, self.in_channels, self.image_size, "UNetViTPotential")
        return self.output_scale * self.head(self.trunk(x))


CIFAR10_POTENTIAL_DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "image_size": 32,
    "base_channels": 128,
    "channel_mults": (1, 2, 2, 2),
    "num_res_blocks": 2,
    "groups": 32,
    "dropout": 0.0,
    "trunk_out_channels": None,
    "patch_size": 4,
    "vit_dim": 512,
    "vit_depth": 6,
    "vit_heads": 8,
    "mlp_ratio": 4.0,
    "pool": "cls",
    "output_scale": 1000.0,
}
"""Paper-scale settings of :func:`cifar10_potential` (51,417,473 parameters, about 50M: UNet trunk
31,418,752, ViT head 19,998,721)."""


def cifar10_potential(**overrides: Any) -> UNetViTPotential:
    """The paper-scale CIFAR-10 potential, :data:`CIFAR10_POTENTIAL_DEFAULTS` updated by ``overrides``.

    Args:
        **overrides: any :class:`UNetViTPotential` argument.

    Returns:
        UNetViTPotential: maps ``(B, 3, 32, 32)`` to ``(B, 1)``.

    Raises:
        TypeError: an unknown setting; the message lists the known ones.

    Example:
        >>> net = cifar10_potential(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4,
        ...                         vit_dim=16, vit_depth=1, vit_heads=2)
        >>> count_parameters(net) < 100_000
        True
    """
    unknown = sorted(set(overrides) - set(CIFAR10_POTENTIAL_DEFAULTS))
    if unknown:
        raise InvalidTypeError(
            f"unknown cifar10_potential setting(s) {unknown}; known: {', '.join(CIFAR10_POTENTIAL_DEFAULTS)}"
        )
    return UNetViTPotential(**{**CIFAR10_POTENTIAL_DEFAULTS, **overrides})


cifar10_potential.options = tuple(CIFAR10_POTENTIAL_DEFAULTS)  # type: ignore[attr-defined]
"""The keyword options :func:`cifar10_potential` takes (the config's ``network_options``)."""
