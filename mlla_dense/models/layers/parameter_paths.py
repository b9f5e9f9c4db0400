"""Reading a module's parameters by dotted names at little host cost."""
from typing import Sequence


class ParameterPaths:
    """``paths(module)``: the parameters of ``module`` named ``names`` (dotted, as in ``named_parameters``), in
    that order, looked up in the submodules' ``_modules`` and ``_parameters`` dicts. Attribute access reaches a
    parameter only through ``nn.Module.__getattr__``, after Python's own lookup has failed: about 1 us per step,
    tens of microseconds for a block's parameters, on every block call. The lookup runs at each call, so a
    replaced submodule or a tensor swapped in by ``torch.func.functional_call`` (CUDA-graph captures) is read;
    a name that is not in ``_parameters`` (a parametrization, a plain attribute) is read as an attribute."""

    def __init__(self, names: Sequence[str]):
        self.paths = [(tuple(name.split('.')[:-1]), name.rsplit('.', 1)[-1]) for name in names]

    def __call__(self, module) -> list:
        params = []
        for hops, name in self.paths:
            owner = module
            for hop in hops:
                owner = owner._modules[hop]
            param = owner._parameters.get(name)
            params.append(param if param is not None else getattr(owner, name))
        return params
