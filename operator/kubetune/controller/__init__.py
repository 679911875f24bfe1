"""The operator's control plane, in controller-runtime's shape: informer cache, work queue, reconcilers.

    objects.py      the watched kinds, their keys and owners, and what of them is kept
    cache.py        InformerCache: latest version of each object, children by owner, echo detection
    queue.py        WorkQueue: dedup, one worker per key, delays, priorities, retry backoff
    recorder.py     EventRecorder: Events posted in the background
    reconciler.py   the Reconciler protocol and the steps reconcilers share
    tuningjob.py    TuningJobReconciler
    dataset.py      DatasetReconciler
    manager.py      Controller: wires them together, runs the worker threads

Nothing here imports kopf: the kopf handlers (`kubetune.handlers`) feed `Controller.observe`.
"""
