"""The Kopf operator: FineTuneJob and AdapterDeployment -> Jobs, Deployments, Services.

Layout (pure modules first, edges last):

* ``names``, ``podspec``, ``trainjob``, ``serving``, ``runtimes``: pure builders,
  spec -> child manifests (dicts), unit-tested by comparing dicts.
* ``jobstatus``, ``adapterstate``: pure status computations (Job + pods -> phase and
  conditions; pods' adapter lists -> per-adapter state).
* ``kube`` (every API call the operator makes), ``probe`` (HTTP to server pods),
  ``relay`` (the training pod's progress sidecar): the edges.
* ``finetunejobs``, ``adapterdeployments``: lifecycles, gluing builders to the edges.
* ``handlers`` (thin Kopf handlers), ``commands`` (``loraland operator ...``).
* ``rbac``: the operator's ClusterRole, derived in one place.

Only this package imports ``kopf`` or ``kubernetes``.
"""
