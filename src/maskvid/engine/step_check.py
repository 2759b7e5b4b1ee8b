"""One optimizer step, and its health read by the host a step later without waiting for the device.

Reading a GPU value makes the host wait for everything queued before it, so a loop that reads the loss, or the
gradient norm, to decide whether to step leaves the GPU idle while the host catches up. Here nothing is read to
decide: a step whose loss or gradient is not finite is skipped *on the device* by the fused AdamW kernel
(``found_inf``, the hook torch's GradScaler uses), and the step's figures — loss, gradient norm, and whether loss,
gradient and updated weights are finite — are copied into pinned host memory right behind it. The loop reads them
after it has queued the next step's forward and backward, by when that copy is long done, and before it queues the
next update: a bad step is never built on, and the run stops at the step before it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from maskvid.engine.distributed import Dist

FIELDS = ("loss", "grad_norm", "loss_finite", "grad_finite", "weights_finite")


class StepCheck:
    """The figures of one step (:data:`FIELDS`), on their way to the host; :meth:`read` waits only for that step."""

    def __init__(self, values: torch.Tensor):
        if values.device.type == "cuda":
            self._host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            self._host.copy_(values, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record()
        else:
            self._host, self._copied = values, None

    def read(self) -> dict[str, float]:
        if self._copied is not None:
            self._copied.synchronize()
        return dict(zip(FIELDS, self._host.tolist(), strict=True))


def optimizer_step(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, losses: list[torch.Tensor],
                   clip_grad: float | None, info: Dist) -> StepCheck:
    """Clip and apply the gradients of ``params`` unless a loss of ``losses`` (this step's micro-batches) or the
    gradient is non-finite on any rank, all without reading the device; returns the step's :class:`StepCheck`.

    ``optimizer`` is fused where it can be (:func:`~maskvid.engine.optim.build_optimizer`): only the fused kernel
    skips an update on a flag it reads on the device. Any other optimizer is stepped after the flags are read.
    """
    loss = torch.stack([value.detach().float().reshape(()) for value in losses]).mean()
    with_grad = [p for p in params if p.grad is not None]
    grads = [p.grad.detach() for p in with_grad]
    if clip_grad:
        norm = torch.nn.utils.clip_grad_norm_(with_grad, clip_grad)
    else:
        norm = total_norm(grads, loss.device)
    finite = torch.stack([torch.isfinite(loss), torch.isfinite(norm)]).float()
    if info.world > 1:  # a rank's own loss may be the bad one; every rank must skip alike (queued, not read)
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = 1.0 - finite.min()  # the kernel leaves weights and moments as they are where 1
        optimizer.step()
    elif bool(finite.min() > 0):  # a device read: the host waits for the backward here
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    weights = torch.isfinite(total_norm([p.detach() for p in params], loss.device)).float()
    return StepCheck(torch.cat([torch.stack([loss, norm.float().to(loss.device)]), finite, weights[None]]))


def total_norm(tensors: list[torch.Tensor], device: torch.device | None = None) -> torch.Tensor:
    """The L2 norm of all ``tensors`` together (inf/nan if any element is); fused where torch offers it."""
    if not tensors:
        return torch.zeros((), device=device)
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(tensors, foreach=True)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))
