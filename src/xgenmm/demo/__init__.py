"""`xgenmm demo`: the whole recipe on the synthetic world, end to end on a CPU, with the
learning measured after each stage (`run_demo`). Light imports only here."""


def run_demo(*args, **kwargs):
    """See `xgenmm.demo.pipeline.run_demo`."""
    from .pipeline import run_demo as _run

    return _run(*args, **kwargs)


__all__ = ["run_demo"]
