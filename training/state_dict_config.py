"""Rebuild a Generator or Discriminator from a bare state dict by reading its key names and shapes.

Used for files written by `torch.save(G.state_dict(), ...)` (or a dict of such state dicts under
'G', 'D', 'G_ema'). Everything that changes the tensors is recoverable from them: resolution,
channels (hence channel_base / channel_max), architecture, z/c/w dims, mapping depth, noise inputs.
What a state dict cannot tell -- mixed precision (num_fp16_res, conv_clamp) and D's minibatch-std
group size -- gets the FP32 defaults and group size 4; pass the module to `force_fp16` or rebuild
it with your own kwargs if you need those.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from torch_utils import persistence, storage_records

NETWORK_KEYS = ("G", "D", "G_ema")


def modules_from_state_dicts(obj: Any, source: str) -> dict:
    """A loaded torch.save object -> snapshot-style dict of modules."""
    if _is_state_dict(obj):
        network = build_from_state_dict(obj, source)
        return {"G_ema" if _is_generator(obj) else "D": network}
    if isinstance(obj, Mapping) and any(key in obj for key in NETWORK_KEYS):
        result = dict(obj)
        for key in NETWORK_KEYS:
            if key in result:
                if not _is_state_dict(result[key]):
                    raise ValueError(f"{source}: item {key!r} must be a state dict (name -> tensor)")
                result[key] = build_from_state_dict(result[key], f"{source}[{key!r}]")
        return result
    raise ValueError(f"{source}: a torch.save file must hold a Generator/Discriminator state dict or a dict with "
                     f"'G', 'D' and/or 'G_ema' state dicts")


def build_from_state_dict(state: Mapping[str, torch.Tensor], source: str) -> torch.nn.Module:
    """Infer the constructor arguments, build the network and load the tensors (strict)."""
    from training import networks  # local: keeps this module importable on its own
    try:
        if _is_generator(state):
            cls, kwargs = networks.Generator, generator_kwargs(state)
        elif "b4.conv.weight" in state:
            cls, kwargs = networks.Discriminator, discriminator_kwargs(state)
        else:
            raise ValueError("neither a Generator (synthesis.*) nor a Discriminator (b4.conv.*) state dict")
        # Key names and shapes are the file's: the inferred arguments get the same range and size checks as a record.
        stored = storage_records.total_elements(state.values())
        module = persistence.build_within_stored_size(cls, (), kwargs, stored, source)
        module.load_state_dict(state, strict=True)
    except (KeyError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(f"{source}: cannot rebuild a network from this state dict ({first_line})") from None
    return module.eval()


def generator_kwargs(state: Mapping[str, torch.Tensor]) -> dict:
    resolutions = _block_resolutions(state, r"synthesis\.b(\d+)\.")
    img_resolution = resolutions[-1]
    channels = {res: state[f"synthesis.b{res}.conv1.weight"].shape[0] for res in resolutions}
    channel_base, channel_max = fit_channel_base(channels)
    synthesis_kwargs: dict[str, Any] = dict(channel_base=channel_base, channel_max=channel_max,
                                            architecture=_generator_architecture(state, img_resolution))
    if "synthesis.b4.conv1.noise_strength" not in state:
        synthesis_kwargs["use_noise"] = False
    mapping = _mapping_kwargs(state, "mapping.")
    z_dim = state["mapping.fc0.weight"].shape[1] - mapping.get("embed_features", 0)
    return dict(z_dim=z_dim, c_dim=mapping.pop("c_dim"), w_dim=state["synthesis.b4.conv1.affine.weight"].shape[1],
                img_resolution=img_resolution,
                img_channels=state[f"synthesis.b{img_resolution}.torgb.weight"].shape[0],
                mapping_kwargs=mapping, synthesis_kwargs=synthesis_kwargs)


def discriminator_kwargs(state: Mapping[str, torch.Tensor]) -> dict:
    resolutions = _block_resolutions(state, r"b(\d+)\.")
    img_resolution = resolutions[-1]
    channels = {res: state[f"b{res}.conv0.weight"].shape[0] for res in resolutions if res > 4}
    channels[4] = state["b4.fc.weight"].shape[0]
    channel_base, channel_max = fit_channel_base(channels)
    kwargs: dict[str, Any] = dict(img_resolution=img_resolution,
                                  img_channels=state[f"b{img_resolution}.fromrgb.weight"].shape[1],
                                  architecture=_discriminator_architecture(state, img_resolution),
                                  channel_base=channel_base, channel_max=channel_max,
                                  epilogue_kwargs=dict(mbstd_num_channels=state["b4.conv.weight"].shape[1] - channels[4]))
    if "mapping.fc0.weight" in state:
        mapping = _mapping_kwargs(state, "mapping.")
        kwargs["c_dim"] = mapping.pop("c_dim")
        kwargs["cmap_dim"] = state["b4.out.weight"].shape[0]
        mapping.pop("embed_features", None)  # D's embedding width always equals cmap_dim
        kwargs["mapping_kwargs"] = mapping
    else:
        kwargs["c_dim"] = 0
    return kwargs


def fit_channel_base(channels: Mapping[int, int]) -> tuple[int, int]:
    """Find (channel_base, channel_max) with min(base // res, max) == channels[res] for every res."""
    channel_max = max(channels.values())
    below_max = [ch * res for res, ch in channels.items() if ch < channel_max]
    channel_base = min(below_max) if below_max else channel_max * max(channels)
    if any(min(channel_base // res, channel_max) != ch for res, ch in channels.items()):
        raise ValueError(f"channel counts {dict(sorted(channels.items()))} do not follow min(base // res, max)")
    return channel_base, channel_max


# ----------------------------------------------------------------------------

def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _is_generator(state: Mapping[str, Any]) -> bool:
    return "synthesis.b4.conv1.weight" in state


def _block_resolutions(state: Mapping[str, Any], pattern: str) -> list[int]:
    found = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    if not found:
        raise ValueError("no resolution blocks found")
    return sorted(found)


def _mapping_kwargs(state: Mapping[str, torch.Tensor], prefix: str) -> dict:
    num_layers = sum(1 for key in state if re.fullmatch(re.escape(prefix) + r"fc\d+\.weight", key))
    kwargs: dict[str, Any] = dict(num_layers=num_layers, c_dim=0)
    if prefix + "embed.weight" in state:
        kwargs["c_dim"] = state[prefix + "embed.weight"].shape[1]
        kwargs["embed_features"] = state[prefix + "embed.weight"].shape[0]
    if num_layers > 1:
        kwargs["layer_features"] = state[prefix + "fc0.weight"].shape[0]
    return kwargs


def _generator_architecture(state: Mapping[str, Any], img_resolution: int) -> str:
    if any(re.fullmatch(r"synthesis\.b\d+\.skip\.weight", key) for key in state):
        return "resnet"
    if img_resolution > 4 and "synthesis.b4.torgb.weight" in state:
        return "skip"
    return "orig"


def _discriminator_architecture(state: Mapping[str, Any], img_resolution: int) -> str:
    if any(re.fullmatch(r"b\d+\.skip\.weight", key) for key in state):
        return "resnet"
    if "b4.fromrgb.weight" in state:
        return "skip"
    return "orig"
