"""kopf's part in the operator: start-up, login, liveness endpoint and shut-down.

`main.build_registry` registers the activity handlers on a fresh `kopf.OperatorRegistry`; there
are no resource handlers, so kopf watches none of our objects. The controller's informers
(`kubetune.controller.informer`) watch TuningJobs, Datasets and our Jobs and Pods themselves,
with label selectors, and feed its cache and queue; the reconciling runs in its worker threads.
`startup` configures kopf and the API clients, fills the cache with the initial listing, and
starts the watches and the workers.
"""
