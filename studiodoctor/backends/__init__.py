"""One connection module per backend (postgres, redis, gcs, kubernetes): how the doctor reaches it,
shared by every layer and by ``preflight``. Layers keep only what is theirs. Beside them, what the
backends' own languages need: ``kubeconfig`` (reading one), ``kube_pods`` (pods and their roles),
``kubectl`` (the kubectl command lines of hints, bound to the profile), ``grants`` (the exact Redis ACL
rule or PostgreSQL GRANT a refusal names).

May import: ``studiodoctor.probes``, ``studiodoctor.model`` and each other. Never the registry, the
engine or a check."""
