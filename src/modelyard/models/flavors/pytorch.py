"""PyTorch modules: the weights (safetensors when installed, else a `weights_only` state dict) plus a program.

The program runs without the module's Python class: a torch.export program (`model.pt2`, the default when
an input example is given, its batch dimension left dynamic), else TorchScript (`model.pt`, scripted, or
traced on the example), else the pickled module (`model.pth`). Every program format unpickles while
loading, so it warns for an untrusted source; `load_model(uri, module=MyNet())` loads only the weights
into your own module instance, which runs no code from the file.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.models.flavors.base import Flavor
from modelyard.models.safety import Trust
from modelyard.models.signature import to_numpy

PROGRAMS = {"export": "model.pt2", "torchscript": "model.pt", "pickle": "model.pth"}


class PyTorchFlavor(Flavor):
    name = "pytorch"
    packages = ("torch",)
    extra = "torch"

    @classmethod
    def detect(cls, model: Any) -> bool:
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(model, torch.nn.Module)

    def save(
        self,
        model: Any,
        path: Path,
        *,
        input_example: Any = None,
        serialization: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        torch = self.import_library("torch")
        weights = _save_weights(torch, model, path)
        wanted = serialization or ("export" if input_example is not None else "torchscript")
        if wanted not in PROGRAMS:
            raise InvalidArgument(
                f"Unknown pytorch serialization {wanted!r}; choose one of {', '.join(PROGRAMS)}."
            )
        was_training = model.training
        model.eval()
        try:
            program = _save_program(
                torch, model, path, wanted, input_example, strict=serialization is not None
            )
        finally:
            model.train(was_training)
        return {
            "files": [weights, PROGRAMS[program]],
            "weights": weights,
            "program": program,
            "torch_version": torch.__version__,
        }

    def load(
        self, path: Path, config: dict[str, Any], trust: Trust, module: Any = None, **options: Any
    ) -> Any:
        torch = self.import_library("torch")
        if module is not None:
            return _load_weights(torch, module, path / config["weights"])
        program = config["program"]
        file = path / PROGRAMS[program]
        trust.check(
            file, f"a PyTorch {program} program (or pass module=YourModule() to load only the weights)"
        )
        if program == "export":
            return torch.export.load(file).module()
        if program == "torchscript":
            with _quiet_deprecation():
                return torch.jit.load(file, map_location="cpu")
        return torch.load(file, map_location="cpu", weights_only=False)

    def predict(self, model: Any, inputs: Any) -> Any:
        torch = sys.modules["torch"]
        device = _device(model)
        with torch.no_grad():
            if isinstance(inputs, Mapping):
                out = model(**{str(k): _tensor(torch, v).to(device) for k, v in inputs.items()})
            else:
                out = model(_tensor(torch, inputs).to(device))
        return _to_numpy(out)

    def requirements(self, config: dict[str, Any]) -> list[str]:
        return ["safetensors"] if str(config.get("weights", "")).endswith(".safetensors") else []


def _save_weights(torch: Any, model: Any, path: Path) -> str:
    try:
        from safetensors.torch import save_model
    except ImportError:
        torch.save(model.state_dict(), path / "weights.pt")
        return "weights.pt"
    save_model(model, str(path / "weights.safetensors"))
    return "weights.safetensors"


def _load_weights(torch: Any, module: Any, file: Path) -> Any:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_model

        load_model(module, str(file))
    else:
        module.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return module.eval()


def _save_program(torch: Any, model: Any, path: Path, wanted: str, example: Any, strict: bool) -> str:
    """Save the first program format that works, starting at `wanted`; with `strict`, only `wanted`."""
    order = list(PROGRAMS)[list(PROGRAMS).index(wanted) :]
    errors = []
    for fmt in order[:1] if strict else order:
        try:
            if fmt == "export":
                if example is None:
                    raise InvalidArgument("torch.export needs an input_example.")
                args, kwargs = _example_args(torch, example)
                dynamic = _dynamic_batch(torch, args, kwargs)
                program = torch.export.export(model, args, kwargs, dynamic_shapes=dynamic)
                torch.export.save(program, path / PROGRAMS[fmt])
            elif fmt == "torchscript":
                with (
                    _quiet_deprecation()
                ):  # deprecated in torch 2.13, still the only program without an example
                    _torchscript(torch, model, example).save(str(path / PROGRAMS[fmt]))
            else:
                torch.save(model, path / PROGRAMS[fmt])
            return fmt
        except Exception as exc:  # try the next format; report them all if none works
            errors.append(f"{fmt}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise InvalidArgument("Could not save the PyTorch module: " + "; ".join(errors))


@contextmanager
def _quiet_deprecation() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _torchscript(torch: Any, model: Any, example: Any) -> Any:
    try:
        return torch.jit.script(model)
    except Exception:
        if example is None:
            raise
        args, kwargs = _example_args(torch, example)
        return torch.jit.trace(model, args, example_kwarg_inputs=kwargs or None)


def _example_args(torch: Any, example: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword tensors for an example; a batch of one is doubled so the batch stays dynamic."""
    if isinstance(example, Mapping):
        return (), {str(k): _batch(torch, _tensor(torch, v)) for k, v in example.items()}
    return (_batch(torch, _tensor(torch, example)),), {}


def _batch(torch: Any, tensor: Any) -> Any:
    return torch.cat([tensor, tensor]) if tensor.ndim and tensor.shape[0] == 1 else tensor


def _dynamic_batch(torch: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    auto = torch.export.Dim.AUTO
    if kwargs:
        return {k: ({0: auto} if v.ndim else {}) for k, v in kwargs.items()}
    return tuple({0: auto} if a.ndim else {} for a in args)


def _tensor(torch: Any, value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value
    array = to_numpy(value)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _device(model: Any) -> Any:
    """Where the module's weights are (inputs go there too); the CPU for a module without any."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)  # lazily: not every tensor
    return first.device if first is not None else "cpu"


def _to_numpy(out: Any) -> Any:
    if isinstance(out, Mapping):
        return {k: _to_numpy(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return [_to_numpy(v) for v in out]
    return to_numpy(out)
