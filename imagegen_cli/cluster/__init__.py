"""``--engine ray``: a batch's local pipeline calls made by Ray actors across a cluster, recorded by this driver.

``engine`` plans exactly as the local engine does; ``dispatch`` runs the calls on the actors of ``worker`` and
emits what they made as the engine events every other engine emits. Ray is imported on this path only.
"""
