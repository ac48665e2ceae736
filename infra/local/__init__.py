"""The embedded local default: a Vertex-compatible REST API and a real GCS emulator.

``tunestack serve`` runs :mod:`infra.local.api` (the Vertex REST subset the flow uses) next
to fake-gcs-server (:mod:`infra.local.storage`), so the same clients that talk to Vertex AI
(ours and Google's SDK) work on a laptop without a cloud account. Where clients find it is
the contract in :mod:`infra.local.home`.
"""
