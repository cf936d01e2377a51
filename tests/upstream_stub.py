"""A stand-in for upstream's torch_utils, exposing exactly the API of the interop facts, and for its loader.

`install_stub(monkeypatch)` puts modules named torch_utils, torch_utils.persistence, torch_utils.misc,
torch_utils.ops and torch_utils.ops.{bias_act, conv2d_resample, fma, upfirdn2d} into sys.modules (restored after
the test); each holds only the names upstream's networks module may use, implemented minimally over our own ops.
`load_like_upstream(path)` then reads a pickle the way upstream's `legacy.load_network_pkl` does: a plain
Unpickler, records rebuilt by *executing* their embedded module source. Tests use it only on files our own
export.py wrote; our real loader never executes anything.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import sys
import types
import uuid

import torch

import dnnlib
from torch_utils import misc as our_misc
from torch_utils.ops import bias_act as our_bias_act
from torch_utils.ops import conv2d_resample as our_conv2d_resample
from torch_utils.ops import fma as our_fma
from torch_utils.ops import upfirdn2d as our_upfirdn2d

# The API, as the interop facts list it (module -> names).
STUB_API = {
    "torch_utils.persistence": {"persistent_class", "_reconstruct_persistent_obj"},
    "torch_utils.misc": {"assert_shape", "profiled_function", "suppress_tracer_warnings"},
    "torch_utils.ops.bias_act": {"bias_act", "activation_funcs"},
    "torch_utils.ops.conv2d_resample": {"conv2d_resample"},
    "torch_utils.ops.fma": {"fma"},
    "torch_utils.ops.upfirdn2d": {"setup_filter", "upsample2d", "downsample2d", "upfirdn2d", "filter2d"},
}


# ----------------------------------------------------------------------------
# persistence: the decorator and the reconstructor, as upstream's loader behaves.

class StubPersistence:
    def __init__(self):
        self.modules_by_src: dict[str, types.ModuleType] = {}
        self.executed: list[str] = []  # names of the modules made from embedded source
        self.decorated: set[type] = set()

    def persistent_class(self, orig_class):
        if orig_class in self.decorated:  # the reconstructor decorates classes that already are
            return orig_class
        if orig_class.__module__ not in sys.modules:
            raise AssertionError(f"{orig_class.__module__} is not in sys.modules")
        orig_module = sys.modules[orig_class.__module__]

        class Decorator(orig_class):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._init_args = copy.deepcopy(args)
                self._init_kwargs = copy.deepcopy(kwargs)
                assert orig_class.__name__ in orig_module.__dict__
                pickle.dumps((self._init_args, self._init_kwargs))  # constructor arguments must pickle

            @property
            def init_args(self):
                return copy.deepcopy(self._init_args)

            @property
            def init_kwargs(self):
                return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        Decorator.__name__ = orig_class.__name__
        Decorator.__qualname__ = orig_class.__qualname__
        Decorator.__module__ = orig_class.__module__
        self.decorated.add(Decorator)
        return Decorator

    def reconstruct(self, meta):
        meta = dnnlib.EasyDict(meta)
        meta.state = dnnlib.EasyDict(meta.state)
        assert meta.version == 6 and meta.type == "class"
        module = self.module_from_source(meta.module_src)
        assert meta.class_name in module.__dict__
        cls = self.persistent_class(module.__dict__[meta.class_name])
        obj = cls.__new__(cls)
        setstate = getattr(obj, "__setstate__", None)
        if callable(setstate):
            setstate(meta.state)
        else:
            obj.__dict__.update(meta.state)
        return obj

    def module_from_source(self, source: str) -> types.ModuleType:
        if source not in self.modules_by_src:
            name = "_imported_module_" + uuid.uuid4().hex
            module = types.ModuleType(name)
            sys.modules[name] = module
            self.executed.append(name)
            exec(compile(source, name, "exec"), module.__dict__)  # noqa: S102 - our own export, in a test
            self.modules_by_src[source] = module
        return self.modules_by_src[source]


# ----------------------------------------------------------------------------
# The ops, minimal, over our implementations.

def _module(name: str, **members) -> types.ModuleType:
    assert set(members) == STUB_API.get(name, set(members)), name
    module = types.ModuleType(name)
    module.__dict__.update(members)
    return module


def build_stub(persist: StubPersistence) -> dict[str, types.ModuleType]:
    def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda"):
        return our_bias_act.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="ref")

    activation_funcs = {name: dnnlib.EasyDict(func=spec.func, def_alpha=spec.def_alpha, def_gain=spec.def_gain,
                                              cuda_idx=spec.cuda_id, ref="", has_2nd_grad=spec.has_2nd_grad)
                        for name, spec in our_bias_act.ACTIVATIONS.items()}

    def profiled_function(fn):
        return fn

    @contextlib.contextmanager
    def suppress_tracer_warnings():
        yield

    def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
        return our_conv2d_resample.conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups,
                                                   flip_weight=flip_weight, flip_filter=flip_filter)

    def fma(a, b, c):
        return a * b + c

    def setup_filter(f, device=torch.device("cpu"), normalize=True, flip_filter=False, gain=1, separable=None):
        return our_upfirdn2d.setup_filter(f, device=device, normalize=normalize, flip_filter=flip_filter, gain=gain,
                                          separable=separable)

    def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="cuda"):
        return our_upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain,
                                       impl="ref")

    def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="cuda"):
        return our_upfirdn2d.filter2d(x, f, padding=padding, flip_filter=flip_filter, gain=gain, impl="ref")

    def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
        return our_upfirdn2d.upsample2d(x, f, up=up, padding=padding, flip_filter=flip_filter, gain=gain, impl="ref")

    def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
        return our_upfirdn2d.downsample2d(x, f, down=down, padding=padding, flip_filter=flip_filter, gain=gain,
                                          impl="ref")

    modules = {
        "torch_utils.persistence": _module("torch_utils.persistence", persistent_class=persist.persistent_class,
                                           _reconstruct_persistent_obj=persist.reconstruct),
        "torch_utils.misc": _module("torch_utils.misc", assert_shape=our_misc.assert_shape,
                                    profiled_function=profiled_function,
                                    suppress_tracer_warnings=suppress_tracer_warnings),
        "torch_utils.ops.bias_act": _module("torch_utils.ops.bias_act", bias_act=bias_act,
                                            activation_funcs=activation_funcs),
        "torch_utils.ops.conv2d_resample": _module("torch_utils.ops.conv2d_resample",
                                                   conv2d_resample=conv2d_resample),
        "torch_utils.ops.fma": _module("torch_utils.ops.fma", fma=fma),
        "torch_utils.ops.upfirdn2d": _module("torch_utils.ops.upfirdn2d", setup_filter=setup_filter,
                                             upfirdn2d=upfirdn2d, filter2d=filter2d, upsample2d=upsample2d,
                                             downsample2d=downsample2d),
    }
    ops = _module("torch_utils.ops", **{n.rsplit(".", 1)[1]: m for n, m in modules.items() if ".ops." in n})
    root = _module("torch_utils", persistence=modules["torch_utils.persistence"], misc=modules["torch_utils.misc"],
                   ops=ops)
    return {"torch_utils": root, "torch_utils.ops": ops, **modules}


def install_stub(monkeypatch) -> StubPersistence:
    """Swap our torch_utils for the stub in sys.modules for the rest of the test."""
    persist = StubPersistence()
    for name in [n for n in sys.modules if n == "torch_utils" or n.startswith("torch_utils.")]:
        monkeypatch.delitem(sys.modules, name)
    for name, module in build_stub(persist).items():
        monkeypatch.setitem(sys.modules, name, module)
    return persist


def uninstall_executed(persist: StubPersistence) -> None:
    for name in persist.executed:
        sys.modules.pop(name, None)


def load_like_upstream(path) -> dict:
    """What upstream's legacy.load_network_pkl does with a PyTorch-era pickle (after install_stub)."""
    with open(path, "rb") as f:
        data = pickle.Unpickler(f).load()
    data.setdefault("training_set_kwargs", None)
    data.setdefault("augment_pipe", None)
    for key in ("G", "D", "G_ema"):
        assert isinstance(data[key], torch.nn.Module), key
    assert isinstance(data["training_set_kwargs"], (dict, type(None)))
    assert isinstance(data["augment_pipe"], (torch.nn.Module, type(None)))
    return data


@torch.no_grad()
def force_fp16_like_upstream(old: torch.nn.Module) -> torch.nn.Module:
    """Upstream's --force-fp16 path: type(old)(**init_kwargs) with num_fp16_res=4, conv_clamp=256, copy by name."""
    kwargs = dict(old.init_kwargs)
    if "synthesis_kwargs" in kwargs:
        kwargs["synthesis_kwargs"] = dict(kwargs["synthesis_kwargs"], num_fp16_res=4, conv_clamp=256)
    else:
        kwargs.update(num_fp16_res=4, conv_clamp=256)
    new = type(old)(**kwargs).eval().requires_grad_(False)
    src = dict(old.named_parameters(), **dict(old.named_buffers()))
    for name, tensor in list(new.named_parameters()) + list(new.named_buffers()):
        tensor.copy_(src[name])
    return new
