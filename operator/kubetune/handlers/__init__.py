"""kopf handlers of the operator: thin glue between kopf's watches and the controller.

`main.build_registry` registers everything on a fresh `kopf.OperatorRegistry`. The watch
handlers (`tuningjob_event`, `dataset_event`, `job_event`, `pod_event`) are async and only hand
each event to the controller's cache and queue (`kubetune.controller`); the reconciling runs in
the controller's worker threads. `startup` configures kopf and the API client, fills the
cache with the initial listing and starts the workers. No handler module imports another.
"""
