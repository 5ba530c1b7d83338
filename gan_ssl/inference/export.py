"""Export a checkpoint's networks as safetensors files and rebuild the generator from them without pickle.

    $ gan-ssl export runs/ssgan --format safetensors --out export/ssgan
    >>> import gan_ssl
    >>> g = gan_ssl.load_generator("export/ssgan")     # a Bundle; no torch.load, no pickle
    >>> g.sample(16, seed=0)                           # uint8 [16, C, H, W], the checkpoint's images for seed 0

An export folder holds one `.safetensors` file per declared network (`net-<name>`) and EMA (`ema-<name>`),
`buffers.safetensors` (fixed latents, grid images), `extra.safetensors` when the family's extra state holds
tensors, and `config.json`: the resolved training config, the family, which file holds what (shapes, dtypes,
sha256), the family's extra state (PGGAN/StyleGAN level of detail and fade-in alpha), the sampling generator
(the family's `generator` declaration) and the gan_ssl version. Each weight file's safetensors metadata names
its family, kind and name (key "gan_ssl.export"). Names come from `family.nets` and `family.emas`, so every
family exports the same way; the same checkpoint always gives the same bytes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from gan_ssl.core import __version__
from gan_ssl.core.errors import CheckpointError, ConfigError
from gan_ssl.core.files import write_atomic
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine.state import load_family_weights
from gan_ssl.families import Family
from gan_ssl.families.bundle import Bundle
from gan_ssl.families.resolve import from_dict
from gan_ssl.inference.load import build_family, checkpoint_file, config_of

FORMAT = "gan_ssl.export"  # a file-format tag written into every file (the module's old name): never change it
VERSION = 1
FORMATS = ("safetensors",)
CONFIG_FILE = "config.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensors(state: dict[str, Any], what: str) -> dict[str, torch.Tensor]:
    """A state dict as CPU tensors that share no memory (what safetensors stores)."""
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{what} holds a non-tensor entry {bad[0]!r}; safetensors stores tensors only")
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _entries(ck: dict[str, Any], fam: Family) -> list[tuple[str, dict[str, Any], dict[str, torch.Tensor]]]:
    """(file name, description, tensors) of every declared net and EMA, the buffers and tensor extras."""
    out = []
    for name in fam.nets:
        role = "generator" if name == fam.generator else "net"
        out.append((f"net-{name}.safetensors", {"kind": "net", "name": name, "role": role}, _tensors(ck["nets"][name], f"network {name}")))
    for name, (src, _) in fam.emas.items():
        role = "generator" if name == fam.generator else "ema"
        out.append((f"ema-{name}.safetensors", {"kind": "ema", "name": name, "source": src, "role": role},
                    _tensors(ck["emas"][name], f"EMA {name}")))
    buffers = {k: v for k, v in ck.get("buffers", {}).items() if k in fam.buffers}
    if buffers:
        out.append(("buffers.safetensors", {"kind": "buffers", "name": "buffers", "role": "buffers"}, _tensors(buffers, "buffers")))
    extra = {k: v for k, v in ck.get("extra", {}).items() if isinstance(v, torch.Tensor)}
    if extra:
        out.append(("extra.safetensors", {"kind": "extra", "name": "extra", "role": "extra"}, _tensors(extra, "extra state")))
    return out


def export(ckpt: str | Path, out: str | Path, fmt: str = "safetensors", force: bool = False) -> dict[str, Any]:
    """Write a checkpoint's nets, EMAs, buffers and config to the folder `out`; returns the written config.json dict.

    Raises CheckpointError for a missing or foreign checkpoint and ConfigError for an unknown format or a
    non-empty `out` without `force` (which overwrites the files it writes)."""
    import safetensors
    import safetensors.torch

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} is not empty; choose a new folder or pass --force to overwrite")
    ck = ckpt_io.load(ckpt)
    cfg = config_of(ck, ckpt)
    fam = build_family(cfg)
    try:
        load_family_weights(fam, ck)  # checks that every declared net and EMA is in the checkpoint and fits the config
    except CheckpointError as e:
        raise CheckpointError(f"{checkpoint_file(ckpt)}: {e}") from None
    files: dict[str, Any] = {}
    common = {"family": cfg.family, "model": cfg.model.name, "gan_ssl": __version__}
    for fname, desc, tensors in _entries(ck, fam):
        # one metadata key: safetensors writes several in hash-map order, and the same checkpoint must give the same bytes
        data = safetensors.torch.save(tensors, metadata={FORMAT: json.dumps({**common, **desc}, sort_keys=True)})
        write_atomic(data, out / fname)
        files[fname] = {**desc, "sha256": _sha256(data), "bytes": len(data),
                        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in tensors.items()}}
    gen = next((f for f, d in files.items() if d["role"] == "generator"), None)
    config = {
        "format": FORMAT, "version": VERSION, "weights": "safetensors",
        "gan_ssl": __version__, "torch": str(torch.__version__), "safetensors": safetensors.__version__,
        "family": cfg.family, "model": cfg.model.name, "step": int(ck["step"]), "images": int(ck.get("images", 0)),
        "checkpoint": {"path": str(checkpoint_file(ckpt)), "format_version": int(ck.get("version", 0))},
        "generator": {"name": fam.generator, "file": gen},
        "sample_options": list(fam.sample_options), "representations": list(fam.representations),
        "files": files,
        "extra": {k: v for k, v in ck.get("extra", {}).items() if not isinstance(v, torch.Tensor)},
        "schedule": dict(ck.get("sched", {})),
        "config": cfg.to_dict(),
    }
    write_atomic((json.dumps(config, indent=2) + "\n").encode(), out / CONFIG_FILE)  # last: a torn export has no config.json
    return {**config, "out": str(out)}


def read_config(folder: str | Path) -> dict[str, Any]:
    """The config.json of an export folder, checked for its format tag and version."""
    p = Path(folder)
    path = p / CONFIG_FILE if p.is_dir() else p
    if not path.is_file():
        raise CheckpointError(f"{p} is not a gan_ssl export: no {CONFIG_FILE} (make one with: gan-ssl export CKPT --out DIR)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gan_ssl export config (no '{FORMAT}' format tag)")
    if int(meta.get("version", -1)) > VERSION:
        raise CheckpointError(f"{path} was written by a newer gan_ssl (export version {meta['version']} > {VERSION}); upgrade gan_ssl")
    return meta


def read_tensors(folder: Path, fname: str, entry: dict[str, Any]) -> dict[str, torch.Tensor]:
    """One exported file's tensors after checking its sha256 against config.json (safetensors: no pickle)."""
    from safetensors.torch import load as parse_safetensors  # parses the header and raw bytes; never unpickles

    path = folder / fname
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the export is incomplete (export the checkpoint again)")
    data = path.read_bytes()
    if _sha256(data) != entry.get("sha256"):
        raise CheckpointError(f"{path} does not match its sha256 in {CONFIG_FILE} (changed or corrupt); export the checkpoint again")
    try:
        return parse_safetensors(data)
    except Exception as e:  # safetensors raises its own SafetensorError for a malformed header
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(e)[:150]})") from None


def load_generator(folder: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild a family from an export folder (config.json + safetensors, no pickle) with every exported net,
    EMA, buffer and extra state loaded; `.sample(n, seed)` gives the checkpoint's images.

    Returns a Bundle (`.sample`, `.representation`, `.family`: e.g. `.family.upscale(x)` for srgan).
    Raises CheckpointError for a missing, foreign, tampered or mismatched export."""
    folder = Path(folder)
    meta = read_config(folder)
    try:
        cfg = from_dict(meta["config"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{folder / CONFIG_FILE} has no usable config: {e}") from None
    fam = build_family(cfg, device)
    targets = {"net": fam.nets, "ema": {k: e.module for k, (_, e) in fam.emas.items()}}
    files = meta.get("files", {})
    for fname, entry in files.items():
        tensors = read_tensors(folder, fname, entry)
        kind, name = entry.get("kind"), entry.get("name")
        if kind in targets:
            if name not in targets[kind]:
                raise CheckpointError(f"{folder / fname}: family {cfg.family} has no {kind} {name!r}")
            try:
                targets[kind][name].load_state_dict(tensors)
            except RuntimeError as e:
                raise CheckpointError(f"{folder / fname} does not match the configured model: {str(e).splitlines()[0][:300]}") from None
        elif kind == "buffers":
            absent = sorted(set(fam.buffers) - set(tensors))
            if absent:
                raise CheckpointError(f"{folder / fname} has no buffer {absent[0]!r} that family {cfg.family} needs; export the checkpoint again")
            fam.buffers.update({k: tensors[k].to(fam.device) for k in fam.buffers})
        elif kind == "extra":
            meta.setdefault("extra", {}).update(tensors)
        else:
            raise CheckpointError(f"{folder / CONFIG_FILE} lists {fname} of unknown kind {kind!r}")
    declared = {f"{d['kind']}:{d['name']}" for d in files.values()}
    missing = [f"{k}:{n}" for k, group in targets.items() for n in group if f"{k}:{n}" not in declared]
    if fam.buffers and "buffers:buffers" not in declared:
        missing.append("buffers:file (buffers.safetensors)")
    if missing:
        raise CheckpointError(f"{folder} holds no {missing[0].replace(':', ' ')} that family {cfg.family} needs; export the checkpoint again")
    fam.load_state_extra(meta.get("extra", {}))
    for net in [*fam.nets.values(), *(e.module for _, e in fam.emas.values())]:
        net.eval().requires_grad_(False)
    return Bundle(fam, int(meta.get("step", 0)), folder, {"export": meta})


def format_export(r: dict[str, Any]) -> str:
    """What `gan-ssl export` prints: one line per file, then how to load it."""
    lines = [f"exported {r['family']}/{r['model']} at step {r['step']} from {r['checkpoint']['path']} -> {r['out']}"]
    for fname, d in r["files"].items():
        n = sum(torch.Size(t["shape"]).numel() for t in d["tensors"].values())
        lines.append(f"  {d['role']:<10} {fname:<28} {len(d['tensors'])} tensors, {n:,} values, sha256 {d['sha256'][:12]}")
    lines.append(f"  config     {CONFIG_FILE} (training config, file list, shapes, dtypes, sha256)")
    lines.append(f"load: gan_ssl.load_generator({r['out']!r})" if r["generator"]["file"] else "note: this family declares no generator")
    return "\n".join(lines)
