"""Finding where code reads a tensor's value back on the host: the calls that, on a GPU, wait for
every queued kernel to finish (and leave the GPU idle until the host queues more).

On a CPU nothing waits, so a test cannot time this; it can see the calls. `HostReads` watches the
torch functions called inside one function of ours (by name) and records each that needs a value
on the host: item/tolist/cpu/numpy, bool/int/float of a tensor, nonzero (its size depends on the
values, as has indexing by a boolean mask), a move to a device (`.to(device)`: a copy when it is
another one), and tensors built from host data (torch.tensor, as_tensor: a host-to-device copy
when the target is a GPU). Calls made by PyTorch's optimizers
(whose step counters live on the host by design) and by Triton's CPU interpreter are not ours and
are left out.
"""
from __future__ import annotations

import sys

import torch
from torch.overrides import TorchFunctionMode

READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero",
         "argwhere", "masked_select", "tensor", "as_tensor"}
NOT_OURS = ("/torch/optim/", "/triton/")


def _masks(args) -> bool:
    """Indexing by a boolean tensor: its result's size depends on the values (a nonzero inside)."""
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in parts)


def _moves_device(args, kwargs) -> bool:
    wanted = list(args[1:]) + [kwargs.get("device")]
    return any(isinstance(a, (torch.device, str, torch.Tensor)) for a in wanted if a is not None)


class HostReads(TorchFunctionMode):
    """with HostReads("train_step") as reads: ...; reads.found: [(call, "file:line", n), ...]
    made inside (any depth below) the n-th call of a function of that name; reads.calls: how many
    of its calls made torch calls at all (so that a test knows it ran). A first call may set up
    things once (a constant copied to the device); `found_after_first` leaves it out."""

    def __init__(self, function: str):
        super().__init__()
        self.function = function
        self.found: list[tuple[str, str, int]] = []
        self.calls = 0
        self._current = None          # the frame of the call being watched (held: ids get reused)

    @property
    def found_after_first(self) -> list[tuple[str, str, int]]:
        return [f for f in self.found if f[2] > 1]

    def __exit__(self, *exc):
        self._current = None
        return super().__exit__(*exc)

    def _where(self) -> str | None:
        """The innermost caller's place when the call is inside self.function and not NOT_OURS'."""
        frame = sys._getframe(2)
        place = None
        while frame is not None:
            filename = frame.f_code.co_filename.replace("\\", "/")
            if any(part in filename for part in NOT_OURS):
                return None
            if place is None and "/torch/" not in filename and not filename.endswith(__file__):
                place = f"{filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
            if frame.f_code.co_name == self.function:
                if frame is not self._current:
                    self._current = frame
                    self.calls += 1
                return place or "?"
            frame = frame.f_back
        return None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        place = self._where()
        if place is not None and (name in READS or (name == "to" and _moves_device(args, kwargs))
                                  or (name in ("__getitem__", "__setitem__") and _masks(args))):
            self.found.append((name, place, self.calls))
        return func(*args, **kwargs)
