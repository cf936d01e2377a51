"""Network pickles: our snapshots, refused globals, upstream-format records, torch.save state dicts."""

from __future__ import annotations

import builtins
import copy
import datetime
import io
import os
import pickle
import pickletools
import subprocess
from collections import OrderedDict

import pytest
import torch

import dnnlib
from torch_utils import persistence
from training import network_pickle, networks

TINY = dict(channel_base=256, channel_max=32)


def make_G(c_dim=0, architecture="skip", seed=0):
    torch.manual_seed(seed)
    G = networks.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(TINY, architecture=architecture))
    G.mapping.w_avg.normal_()  # non-default buffers must survive too
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.fill_(0.3)
    return G.eval()


def make_D(c_dim=0, seed=1):
    torch.manual_seed(seed)
    return networks.Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                                  epilogue_kwargs=dict(mbstd_group_size=2), **TINY)


def assert_same_networks(G_a, G_b, D_a=None, D_b=None, c_dim=0):
    torch.manual_seed(5)
    z = torch.randn(2, 8)
    c = torch.eye(max(c_dim, 1))[:2, :c_dim] if c_dim else None
    assert type(G_b) is networks.Generator
    torch.testing.assert_close(G_b(z, c, truncation_psi=0.7, noise_mode="const"),
                               G_a(z, c, truncation_psi=0.7, noise_mode="const"), rtol=0, atol=0)
    if D_a is not None:
        img = torch.randn(2, 3, 16, 16)
        assert type(D_b) is networks.Discriminator
        torch.testing.assert_close(D_b(img, c), D_a(img, c), rtol=0, atol=0)


def pickled_globals(data: bytes) -> set[str]:
    """Module.name pairs a pickle stream refers to (GLOBAL and STACK_GLOBAL with preceding strings)."""
    names, strings = set(), []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif opcode.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
        elif opcode.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
    return names


# ----------------------------------------------------------------------------
# Our snapshots.

def test_snapshot_round_trip_holds_only_data_and_one_reconstructor(tmp_path):
    G, D = make_G(c_dim=3), make_D(c_dim=3)
    kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path="x.zip", resolution=16)
    path = tmp_path / "network-snapshot-000000.pkl"
    network_pickle.save_network_pkl(str(path), dict(G=G, D=D, G_ema=copy.deepcopy(G), augment_pipe=None,
                                                    training_set_kwargs=kwargs, cur_nimg=1234))
    data = path.read_bytes()
    refs = pickled_globals(data)
    assert "torch_utils.persistence.rebuild_persistent_module" in refs
    assert not any(name.startswith("training.") for name in refs)  # no class is pickled by reference
    assert refs <= {"torch_utils.persistence.rebuild_persistent_module", "collections.OrderedDict",
                    "dnnlib.util.EasyDict", "torch._utils._rebuild_tensor_v2", "torch.storage._load_from_bytes"}

    loaded = network_pickle.load_network_pkl(str(path))
    assert_same_networks(G, loaded["G"], D, loaded["D"], c_dim=3)
    assert_same_networks(G, loaded["G_ema"], c_dim=3)
    assert loaded["augment_pipe"] is None and loaded["cur_nimg"] == 1234
    assert isinstance(loaded["training_set_kwargs"], dnnlib.EasyDict)
    assert loaded["training_set_kwargs"].resolution == 16
    assert loaded["G"].init_kwargs == G.init_kwargs
    assert not loaded["G"].training


def test_deepcopy_keeps_flags_and_does_not_share_tensors():
    G = make_G().requires_grad_(False)
    clone = copy.deepcopy(G)
    assert all(not p.requires_grad for p in clone.parameters())
    clone.mapping.w_avg.zero_()
    assert G.mapping.w_avg.abs().sum() > 0
    assert clone.init_kwargs == G.init_kwargs


def test_save_refuses_non_persistent_modules_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.pkl"
    with pytest.raises(TypeError, match="'G'.*persistent_class"):
        network_pickle.save_network_pkl(str(path), dict(G=torch.nn.Linear(2, 2)))
    assert os.listdir(tmp_path) == []


def test_force_fp16_rebuilds_with_mixed_precision_and_same_weights(tmp_path):
    G, D = make_G(), make_D()
    path = tmp_path / "snap.pkl"
    network_pickle.save_network_pkl(str(path), dict(G=G, D=D, G_ema=G))
    loaded = network_pickle.load_network_pkl(str(path), force_fp16=True)
    assert loaded["G_ema"].init_kwargs["synthesis_kwargs"]["num_fp16_res"] == 4
    assert loaded["D"].init_kwargs["conv_clamp"] == 256
    assert loaded["G_ema"].synthesis.b16.use_fp16 and loaded["D"].b16.use_fp16
    assert_same_networks(G, loaded["G_ema"], D, loaded["D"])  # FP16 blocks run in FP32 on CPU


# ----------------------------------------------------------------------------
# Malicious pickles.

class Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("func,name", [
    (os.system, "system"),
    (builtins.eval, "builtins.eval"),
    (subprocess.Popen, "subprocess.Popen"),
    (builtins.exec, "builtins.exec"),
])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, func, name):
    marker = tmp_path / "pwned"
    command = f"open({str(marker)!r}, 'w').close()" if func in (builtins.eval, builtins.exec) else f"touch {marker}"
    args = (["touch", str(marker)],) if func is subprocess.Popen else (command,)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil(func, *args)}))
    with pytest.raises(pickle.UnpicklingError, match=rf"evil\.pkl: refusing to load global \S*{name} "):
        network_pickle.load_network_pkl(str(path))
    assert not marker.exists()


def test_refuses_arbitrary_classes_inside_an_otherwise_valid_snapshot(tmp_path):
    data = pickle.dumps({"G_ema": make_G(), "extra": OrderedDict(a=datetime.timedelta(days=1))})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global datetime.timedelta"):
        network_pickle.load_network_pkl(io.BytesIO(data))


def test_our_reconstructor_only_builds_project_persistent_classes():
    record = persistence.make_record(make_G())
    record["class_name"] = "os.system"
    with pytest.raises(pickle.UnpicklingError, match="cannot resolve network class 'os.system'"):
        network_pickle.load_network_pkl(io.BytesIO(pickle.dumps({"G_ema": Evil(persistence.rebuild_persistent_module, record)})))
    record["class_name"] = "torch_utils.misc.InfiniteSampler"
    with pytest.raises(pickle.UnpicklingError, match="not a persistent network class"):
        network_pickle.load_network_pkl(io.BytesIO(pickle.dumps({"G_ema": Evil(persistence.rebuild_persistent_module, record)})))


def test_clear_errors_for_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        network_pickle.load_network_pkl(str(tmp_path / "nope.pkl"))
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(pickle.UnpicklingError, match="junk.pkl: not a readable network pickle"):
        network_pickle.load_network_pkl(str(tmp_path / "junk.pkl"))
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="list.pkl: a network pickle must hold a dict"):
        network_pickle.load_network_pkl(str(tmp_path / "list.pkl"))
    (tmp_path / "wrong.pkl").write_bytes(pickle.dumps({"G_ema": 3}))
    with pytest.raises(ValueError, match="item 'G_ema' must be a network module"):
        network_pickle.load_network_pkl(str(tmp_path / "wrong.pkl"))


# ----------------------------------------------------------------------------
# Upstream-format pickles, built here the way upstream's persistence writes them.

MALICIOUS_SOURCE = "import pathlib\npathlib.Path({marker!r}).write_text('executed')\n"


class UpstreamStyleRecord:
    """Pickles like an upstream persistent object: reconstructor + {type, version, module_src, class_name, state}."""

    def __init__(self, module: torch.nn.Module, module_src: str, version: int = 6):
        self.module, self.module_src, self.version = module, module_src, version

    def __reduce__(self):
        m = self.module
        state = {
            "training": m.training,
            "_parameters": OrderedDict(m._parameters),
            "_buffers": OrderedDict(m._buffers),
            "_non_persistent_buffers_set": set(),
            "_forward_hooks": OrderedDict(),
            "_modules": OrderedDict((n, UpstreamStyleRecord(c, self.module_src)) for n, c in m._modules.items()),
            "_init_args": tuple(getattr(m, "init_args", ())),
            "_init_kwargs": dnnlib.EasyDict(getattr(m, "init_kwargs", getattr(m, "upstream_init_kwargs", {}))),
        }
        state.update({k: v for k, v in vars(m).items() if isinstance(v, (int, float, str, bool)) and k != "training"})
        meta = dict(type="class", version=self.version, module_src=self.module_src,
                    class_name=type(m).__name__, state=state)
        return persistence._reconstruct_persistent_obj, (meta,)


def upstream_pickle(tmp_path, modules: dict, version=6) -> tuple[str, object]:
    marker = tmp_path / "source_was_executed"
    source = MALICIOUS_SOURCE.format(marker=str(marker))
    data = {key: (UpstreamStyleRecord(value, source, version) if isinstance(value, torch.nn.Module) else value)
            for key, value in modules.items()}
    path = tmp_path / "upstream.pkl"
    path.write_bytes(pickle.dumps(data, protocol=3))
    return str(path), marker


@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_upstream_format_pickle_becomes_our_classes_with_identical_outputs(tmp_path, architecture):
    G, D = make_G(c_dim=2, architecture=architecture), make_D(c_dim=2)
    kwargs = dnnlib.EasyDict(path="ffhq.zip", use_labels=True)
    path, marker = upstream_pickle(tmp_path, dict(G=G, D=D, G_ema=G, training_set_kwargs=kwargs, augment_pipe=None))
    refs = pickled_globals(open(path, "rb").read())
    assert "torch_utils.persistence._reconstruct_persistent_obj" in refs

    loaded = network_pickle.load_network_pkl(path)
    assert not marker.exists()  # the embedded module source never ran
    assert_same_networks(G, loaded["G"], D, loaded["D"], c_dim=2)
    assert_same_networks(G, loaded["G_ema"], c_dim=2)
    assert loaded["G_ema"].init_kwargs["synthesis_kwargs"]["architecture"] == architecture
    assert loaded["training_set_kwargs"] == kwargs and loaded["augment_pipe"] is None


def test_upstream_augment_pipe_maps_to_ours_with_its_probability(tmp_path):
    augment = pytest.importorskip("training.augment")
    pipe = augment.AugmentPipe(xflip=1, rotate90=1, xint=1)
    pipe.upstream_init_kwargs = dict(xflip=1, rotate90=1, xint=1)  # upstream stores these in the record
    pipe.p.fill_(0.375)
    path, marker = upstream_pickle(tmp_path, dict(G_ema=make_G(), augment_pipe=pipe))
    loaded = network_pickle.load_network_pkl(path)
    assert type(loaded["augment_pipe"]) is augment.AugmentPipe
    assert float(loaded["augment_pipe"].p) == 0.375 and loaded["augment_pipe"].xflip == 1
    assert not marker.exists()


def test_upstream_records_with_unknown_class_or_version_are_refused(tmp_path):
    class Custom(torch.nn.Module):
        pass

    path, marker = upstream_pickle(tmp_path, dict(G_ema=Custom()))
    with pytest.raises(pickle.UnpicklingError, match="upstream class 'Custom' has no equivalent"):
        network_pickle.load_network_pkl(path)
    path, marker = upstream_pickle(tmp_path, dict(G_ema=make_G()), version=5)
    with pytest.raises(pickle.UnpicklingError, match="version 5 is not supported"):
        network_pickle.load_network_pkl(path)
    assert not marker.exists()


def test_upstream_record_with_mismatched_tensors_names_the_problem(tmp_path):
    G = make_G()
    G.synthesis.b16.conv1.bias = torch.nn.Parameter(torch.zeros(5))  # stored shape disagrees with the kwargs
    path, _ = upstream_pickle(tmp_path, dict(G_ema=G))
    with pytest.raises(pickle.UnpicklingError, match=r"Generator tensors do not match.*b16\.conv1\.bias"):
        network_pickle.load_network_pkl(path)


# ----------------------------------------------------------------------------
# torch.save state dicts.

@pytest.mark.parametrize("zip_format", [True, False])
def test_bare_generator_state_dict_is_rebuilt_by_shape_inference(tmp_path, zip_format):
    G = make_G(c_dim=3, architecture="resnet")
    path = tmp_path / "G.pt"
    torch.save(G.state_dict(), path, _use_new_zipfile_serialization=zip_format)
    loaded = network_pickle.load_network_pkl(str(path))
    assert list(loaded) == ["G_ema"]
    assert_same_networks(G, loaded["G_ema"], c_dim=3)
    kwargs = loaded["G_ema"].init_kwargs
    assert (kwargs["z_dim"], kwargs["c_dim"], kwargs["img_resolution"]) == (8, 3, 16)
    assert kwargs["synthesis_kwargs"]["architecture"] == "resnet"


def test_dict_of_state_dicts_rebuilds_g_d_and_g_ema(tmp_path):
    G, D = make_G(c_dim=4, architecture="orig"), make_D(c_dim=4)
    D_orig = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, architecture="orig",
                                    epilogue_kwargs=dict(mbstd_group_size=4), **TINY)
    path = tmp_path / "nets.pt"
    torch.save({"G": G.state_dict(), "G_ema": G.state_dict(), "D": D.state_dict(), "kimg": 7}, path)
    loaded = network_pickle.load_network_pkl(str(path))
    assert_same_networks(G, loaded["G"], D, loaded["D"], c_dim=4)
    assert loaded["kimg"] == 7
    torch.save(D_orig.state_dict(), path)
    D_loaded = network_pickle.load_network_pkl(str(path))["D"]
    img = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(D_loaded(img, None), D_orig(img, None), rtol=0, atol=0)


def test_torch_save_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"G": Evil(os.system, f"touch {tmp_path / 'pwned'}")}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pt: refused: it names \S*system") as refused:
        network_pickle.load_network_pkl(str(path))
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)  # never "trust the file"
    assert not (tmp_path / "pwned").exists()


def write_snapshot(tmp_path, training_set_kwargs, c_dim=0, architecture="skip"):
    """A train.py-style snapshot of tiny G, D and G_ema (another seed) in tmp_path; returns (path, G, D, G_ema)."""
    G, D = make_G(c_dim=c_dim, architecture=architecture), make_D(c_dim=c_dim)
    G_ema = make_G(c_dim=c_dim, architecture=architecture, seed=3)
    path = tmp_path / "snapshot.pkl"
    network_pickle.save_network_pkl(str(path), dict(G=G, D=D, G_ema=G_ema, training_set_kwargs=training_set_kwargs,
                                                    augment_pipe=None))
    return str(path), G, D, G_ema
