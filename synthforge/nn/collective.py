"""What data-parallel workers share each step: the gradients' all-reduce and agreed decisions.

The training loop (:func:`synthforge.nn.train`) calls these when ``context.distributed`` is set; the Ray Train
orchestration that starts the workers is :mod:`synthforge.nn.distributed`. Only ``torch.distributed`` is used
here, so the loop needs no Ray import.
"""

from __future__ import annotations

from typing import Any


def average_gradients(modules: list[Any], world: int) -> list[Any]:
    """After each backward pass, every parameter's gradient summed over the workers and divided by their number
    (DDP's all-reduce), so each worker's optimiser steps with the gradient of the whole batch. Returns the hooks'
    handles.

    One all-reduce a backward pass, of all the gradients in one flat buffer, once the last of them has
    accumulated (as DDP's buckets do, in one bucket): a collective costs its latency whatever its size, and a
    small tabular model has tens of parameter tensors (on Adult, two gloo workers on two cores: one all-reduce
    per parameter made a step ~3× slower than one per pass). Every parameter must get a gradient in every
    backward pass (true of the shipped models, whose every weight is on every row's path); a pass that leaves
    some out is flushed before the optimiser steps, with zeros in their place."""
    import torch
    import torch.distributed as dist
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    parameters = [parameter for module in modules for parameter in module.parameters() if parameter.requires_grad]
    pending: set[int] = set()

    def flush() -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world)
        offset = 0
        for parameter, grad in zip(parameters, grads, strict=True):
            averaged = flat[offset : offset + grad.numel()].view_as(grad)
            if parameter.grad is None:
                parameter.grad = averaged.clone()
            else:
                parameter.grad.copy_(averaged)
            offset += grad.numel()
        pending.clear()

    def accumulated(parameter: Any) -> None:
        pending.add(id(parameter))
        if len(pending) == len(parameters):
            flush()

    def before_step(optimiser: Any, args: Any, kwargs: Any) -> None:
        if pending:
            flush()

    handles = [parameter.register_post_accumulate_grad_hook(accumulated) for parameter in parameters]
    return [*handles, register_optimizer_step_pre_hook(before_step)]


def agree(values: list[float], op: str = "mean") -> list[float]:
    """The workers' ``values`` combined (the mean of each, or the maximum): every worker gets the same."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    if op == "mean":
        tensor /= dist.get_world_size()
    return tensor.tolist()
