"""BigBiGAN's networks: Donahue & Simonyan, "Large Scale Adversarial Representation Learning", NeurIPS 2019.

G: the SN-GAN ResNet generator (`gan_ssl.models.sngan`), unchanged; or, with `backbone="dcgan"`, the DCGAN generator
   (`gan_ssl.models.dcgan`, the main job's much cheaper strided-conv G).
E: a small pre-activation ResNet (BatchNorm) on x, globally average-pooled ("pool"), optionally followed
   by BN + CReLU ("bn_crelu", the paper's better-probing variant), then an MLP head giving the mean and a
   softplus standard deviation of z; E(x) = mu + sigma * eps (reparameterised), or mu when deterministic.
D: three parts over a pair (x, z) (paper, section 2):
     F  the SN-GAN ResNet discriminator trunk on x (spectral norm), or DCGAN's strided-conv D with spectral norm in
        place of BatchNorm (SN-GAN's "standard CNN"; no BatchNorm, as F sees reals and fakes in one pass); its
        linear head gives the unary score s_x
     H  a residual MLP on z (spectral norm); a linear head gives the unary score s_z
     J  a residual MLP on [F(x) * j_x_scale, H(z)] (spectral norm); a linear head gives the joint score s_xz, plus,
        with `j_projection`, the inner product <P F(x) * j_x_scale, H(z)> (P spectral-normalised), the projection
        discriminator's form (Miyato & Koyama 2018) with H(z) in the place of the class embedding
Scale of J's inputs: F sum-pools an 8x8 map, so |F(x)| is far larger than |H(z)|, and J read x alone. So H and J are
residual MLPs (as the paper's, with skips) and J reads F(x) * `j_x_scale` (1/sqrt(64)); the projection term gives J
the x-z interaction that an MLP over the concatenation did not learn in CPU-length runs (measurements:
docs/bigbigan.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.models.base import Discriminator, Generator
from gan_ssl.models.dcgan import dcgan
from gan_ssl.models.registry import register_model
from gan_ssl.models.sngan import sngan
from gan_ssl.nn.layers import maybe_sn, xavier

SCORES = ("x", "z", "xz")  # s_x, s_z, s_xz
BACKBONES = ("sngan", "dcgan")  # where G and F come from


def _n_stages(resolution: int) -> int:
    n = math.log2(resolution / 4)
    if resolution < 8 or not n.is_integer():
        raise ValueError(f"the bigbigan encoder needs a resolution of 4 * 2^k >= 8, got {resolution}")
    return int(n)


class EBlock(nn.Module):
    """Pre-activation residual block with BatchNorm: [B, Cin, H, W] -> [B, Cout, H/s, W/s], s = 2 if downsample."""

    def __init__(self, cin: int, cout: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, 1, 0, bias=False) if (downsample or cin != cout) else nn.Identity()
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.bn1(x)))
        h = self.conv2(F.relu(self.bn2(h)))
        s = self.shortcut(x)
        if self.downsample:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class EConv(nn.Module):
    """Pre-activation strided conv (DCGAN-style E stage): BN, ReLU, 4x4 conv with stride 2: [B, Cin, H, W] -> [B, Cout, H/2, W/2]."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 4, 2, 1, bias=False)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.bn(x)))


E_ARCHS = ("resnet", "conv")  # E's stages: residual blocks (`depth` each) or one strided conv each


class CReLU(nn.Module):
    """[B, F] -> [B, 2F]: cat(relu(x), relu(-x)) (Shang et al. 2016)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(x), F.relu(-x)], dim=1)


class Encoder(nn.Module):
    """x [B, C, R, R] in [-1, 1] -> z [B, z_dim].

    Trunk: a 3x3 stem conv, then one stage per halving down to 4x4 (width, 2*width, 4*width, ... channels),
    `depth` residual blocks each (`arch="resnet"`) or one pre-activation 4x4 strided conv (`arch="conv"`, DCGAN-style,
    about 3x cheaper per image at width 32), then BN + ReLU and global average pooling ("pool", [B, feature_dim]).
    With `bn_crelu`, BatchNorm1d + CReLU follow ("bn_crelu", [B, 2 * feature_dim]) and the head reads them.
    Head: Linear -> ReLU -> Linear to (mu, pre-sigma) [B, 2 * z_dim]; sigma = softplus(pre-sigma).
    """

    def __init__(self, resolution: int = 32, channels: int = 1, z_dim: int = 128, width: int = 32, depth: int = 1,
                 head_width: int = 256, bn_crelu: bool = True, stochastic: bool = True, arch: str = "resnet") -> None:
        super().__init__()
        if arch not in E_ARCHS:
            raise ValueError(f"the bigbigan encoder's arch must be one of {', '.join(E_ARCHS)}, got {arch!r}")
        self.z_dim, self.stochastic, self.bn_crelu = z_dim, stochastic, bn_crelu
        n = _n_stages(resolution)
        self.stem = nn.Conv2d(channels, width, 3, 1, 1, bias=False)
        stages: dict[str, nn.Module] = {}
        cin = width
        for i in range(n):
            cout = width * 2**i
            if arch == "conv":
                stages[f"stage{i + 1}"] = EConv(cin, cout)
            else:
                stages[f"stage{i + 1}"] = nn.Sequential(*(EBlock(cin if j == 0 else cout, cout, downsample=j == 0) for j in range(depth)))
            cin = cout
        self.stages = nn.ModuleDict(stages)
        self.out_bn = nn.BatchNorm2d(cin)
        self.feature_dim = cin
        self.post = nn.Sequential(nn.BatchNorm1d(cin), CReLU()) if bn_crelu else nn.Identity()
        head_in = 2 * cin if bn_crelu else cin
        self.head = nn.Sequential(xavier(nn.Linear(head_in, head_width)), nn.ReLU(), xavier(nn.Linear(head_width, 2 * z_dim)))

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output [B, C_i, H_i, W_i], "pool" [B, feature_dim] and, with bn_crelu, "bn_crelu" [B, 2 * feature_dim]."""
        out: dict[str, torch.Tensor] = {}
        h = self.stem(x)
        for name, stage in self.stages.items():
            h = stage(h)
            out[name] = h
        pooled = F.relu(self.out_bn(h)).mean(dim=(2, 3))  # [B, feature_dim]
        out["pool"] = pooled
        if self.bn_crelu:
            out["bn_crelu"] = self.post(pooled)
        return out

    def layer_names(self) -> list[str]:
        return [*self.stages.keys(), "pool", *(["bn_crelu"] if self.bn_crelu else [])]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma), each [B, z_dim]; sigma = softplus(.) > 0."""
        f = self.features(x)
        h = self.head(f["bn_crelu"] if self.bn_crelu else f["pool"])  # [B, 2 * z_dim]
        mu, pre = h.chunk(2, dim=1)
        return mu, F.softplus(pre)

    def sample(self, x: torch.Tensor, deterministic: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, mu, sigma), each [B, z_dim]: z = mu + sigma * eps (eps ~ N(0, I) from torch's global RNG), or mu when
        deterministic (default: the encoder's `stochastic` setting decides)."""
        mu, sigma = self.encode(x)
        if deterministic if deterministic is not None else not self.stochastic:
            return mu, mu, sigma
        return mu + sigma * torch.randn_like(mu), mu, sigma

    def forward(self, x: torch.Tensor, deterministic: bool | None = None) -> torch.Tensor:
        """z [B, z_dim] (see `sample`)."""
        return self.sample(x, deterministic)[0]


class ResMLP(nn.Module):
    """[B, cin] -> [B, width]: a spectral-normalised linear layer, then `layers - 1` residual blocks
    h <- h + W relu(h) (spectral norm), then ReLU. The skips keep the output's scale near the input's, so that
    H(z) is not dwarfed by F(x) in J's input (the paper's H and J are MLPs with skip connections)."""

    def __init__(self, cin: int, width: int, layers: int) -> None:
        super().__init__()
        self.inp = maybe_sn(xavier(nn.Linear(cin, width)), True)
        self.blocks = nn.ModuleList(maybe_sn(xavier(nn.Linear(width, width)), True) for _ in range(layers - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for lin in self.blocks:
            h = h + lin(F.relu(h))
        return F.relu(h)


class JointDiscriminator(nn.Module):
    """(x [B, C, R, R], z [B, z_dim]) -> scores {"x": s_x [B], "z": s_z [B], "xz": s_xz [B]}.

    `F` is an SN-GAN or spectral-normalised DCGAN discriminator (its `feature` is F(x) [B, F_dim], its `head` gives s_x), so the
    rotation task attaches to it like to any `Discriminator`. Every layer is spectral-normalised.
    """

    def __init__(self, F_net: Discriminator, z_dim: int, h_width: int = 256, j_width: int = 256, mlp_layers: int = 2,
                 j_x_scale: float = 0.125, j_projection: bool = False) -> None:
        super().__init__()
        self.F, self.j_x_scale = F_net, j_x_scale
        self.H = ResMLP(z_dim, h_width, mlp_layers)
        self.z_head = maybe_sn(xavier(nn.Linear(h_width, 1)), True)
        self.J = ResMLP(F_net.feature_dim + h_width, j_width, mlp_layers)
        self.xz_head = maybe_sn(xavier(nn.Linear(j_width, 1)), True)
        # projection term of s_xz: <P F(x) * j_x_scale, H(z)>, a bilinear agreement score as in the projection
        # discriminator (Miyato & Koyama 2018), with H(z) in the place of the class embedding
        self.proj = maybe_sn(xavier(nn.Linear(F_net.feature_dim, h_width, bias=False)), True) if j_projection else None
        self.spectral_norm = True

    def scores(self, fx: torch.Tensor, z: torch.Tensor, terms: tuple[str, ...] = SCORES) -> dict[str, torch.Tensor]:
        """Scores from F's features fx [B, F_dim] and z [B, z_dim]; only the `terms` asked for are computed."""
        assert fx.ndim == 2 and z.ndim == 2 and fx.shape[0] == z.shape[0], (fx.shape, z.shape)
        out: dict[str, torch.Tensor] = {}
        if "x" in terms:
            out["x"] = self.F.head(fx).squeeze(1)
        if "z" in terms or "xz" in terms:
            hz = self.H(z)  # [B, h_width]
            if "z" in terms:
                out["z"] = self.z_head(hz).squeeze(1)
            if "xz" in terms:
                fs = fx * self.j_x_scale
                out["xz"] = self.xz_head(self.J(torch.cat([fs, hz], dim=1))).squeeze(1)
                if self.proj is not None:
                    out["xz"] = out["xz"] + (self.proj(fs) * hz).sum(dim=1)  # [B]
        return out

    def forward(self, x: torch.Tensor, z: torch.Tensor, terms: tuple[str, ...] = SCORES) -> dict[str, torch.Tensor]:
        return self.scores(self.F.feature(x), z, terms)


@register_model("bigbigan", family="bigbigan")
def bigbigan(resolution: int = 32, channels: int = 1,
             z_dim: int = 128,  # BigGAN/BigBiGAN use 120; 128 matches the SSGAN preset's G
             g_width: int = 64,  # SN-GAN G channels (the 32-px paper model: 256; configs shrink it for the CPU)
             d_width: int = 64,  # F's channels (SN-GAN D trunk)
             self_modulation: bool = True,  # G's self-modulated BN, as in the SSGAN preset
             e_width: int = 32,  # E's first-stage channels, doubled per stage (32 px: 32, 64, 128; pooled feature 128)
             e_depth: int = 1,  # residual blocks per E stage (1 keeps E cheaper than G on a CPU; unused by e_arch "conv")
             e_arch: str = "resnet",  # E's stages: "resnet" (pre-activation residual blocks) or "conv" (one strided conv each)
             e_head_width: int = 256,  # hidden units of E's (mu, sigma) MLP head
             e_bn_crelu: bool = True,  # BN + CReLU after E's pooling, read by the head (the paper's better variant)
             e_stochastic: bool = True,  # E(x) = mu + sigma * eps (BigBiGAN); False = mu (BiGAN's deterministic E)
             h_width: int = 256,  # width of H, the MLP on z (paper: 2048; small data needs far less)
             j_width: int = 256,  # width of J, the MLP on [F(x), H(z)]
             mlp_layers: int = 2,  # linear layers of H and of J, all but the first residual (paper: 8 with skips)
             j_x_scale: float = 0.125,  # J reads F(x) * this: F sum-pools an 8x8 map; 1/sqrt(64) puts F(x) on H(z)'s scale (see the module docstring)
             j_projection: bool = False,  # s_xz += <P F(x), H(z)> (projection discriminator's inner product; see JointDiscriminator)
             backbone: str = "sngan",  # G and F: "sngan" (ResNets) or "dcgan" (strided convs, SN in F; several times cheaper per step)
             ) -> tuple[Generator, Encoder, JointDiscriminator]:
    """BigBiGAN at any resolution 4 * 2^k >= 16: (G, E, D) with G and F from the SN-GAN builder or, with
    `backbone="dcgan"`, from the DCGAN builder with spectral norm in F (`self_modulation` is then unused)."""
    if backbone not in BACKBONES:
        raise ValueError(f"bigbigan backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
    if backbone == "sngan":
        G, F_net = sngan(resolution, channels, z_dim, g_width, d_width, self_modulation)
    else:
        G, F_net = dcgan(resolution, channels, z_dim, g_width, d_width, spectral_norm=True)
    E = Encoder(resolution, channels, z_dim, e_width, e_depth, e_head_width, e_bn_crelu, e_stochastic, e_arch)
    return G, E, JointDiscriminator(F_net, z_dim, h_width, j_width, mlp_layers, j_x_scale, j_projection)
