"""The emit layer: a plan registered as Pulumi resources (the program `pulumi up` runs).

:func:`~infra.emit.program.build` is the whole program (checks -> plan -> emit -> outputs);
:func:`~infra.emit.offline.run_offline` runs it under Pulumi's mocks for ``tunestack plan``.
"""
