"""The one client layer that talks to Vertex AI, for the Pulumi providers, ``up --local`` and
doctor.

Every function takes a :class:`~infra.vertex.target.Target` (which project/region, and whether
the API is real Vertex AI or the local Vertex-compatible server) plus plain inputs, builds a
Google GAPIC client inside the call, and returns plain values or proto-plus messages. Nothing
here keeps a client, channel or credential between calls: Pulumi pickles the providers that
call this package, and credentials must be resolved at call time (ADC for Vertex, the local
server's bearer token for the local API).

Modules, by concern: ``errors`` (what callers catch), ``target`` (where calls go and with which
credentials), ``keys`` (deterministic job/deployment keys, labels, display names), ``jobs``
(tuning and custom jobs), ``deployments`` (``:deploy``, undeploy, delete), ``operations`` (the
one place that waits: api_core polling) and ``checkpoints`` (listing a job's checkpoints).
"""
