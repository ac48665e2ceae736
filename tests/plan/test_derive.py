"""Derived bucket uses and IAM grants."""

from __future__ import annotations

from pathlib import Path

from infra import catalog
from infra.checks import validate
from infra.plan.derive import bucket_uses, derived_grants

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_llama4_spec_grants_both_agents_on_the_images_bucket() -> None:
    report = validate(SPECS / "llama4.yaml")
    assert report.ok and report.spec is not None
    uses = bucket_uses(report.spec, report)
    assert uses == {
        "acme-ml-dev-images": ["images of dataset product-photos"],
        "acme-ml-dev-tuning": [
            "dataset product-photos train",
            "dataset product-photos validation",
            "job photo-captions output",
        ],
    }
    grants = derived_grants(report.spec, report)
    assert grants == [(b, d) for b in sorted(uses) for d in catalog.SERVICE_AGENT_DOMAINS]
    # Without the report the images are unknown: only the spec's own buckets.
    assert set(bucket_uses(report.spec)) == {"acme-ml-dev-tuning"}


def test_gs_datasets_custom_weights_and_unused_datasets(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        """\
project: {id: acme-ml-dev, region: us-central1}
buckets:
  - {name: data-bkt, create: false}
  - {name: out-bkt}
  - {name: base-bkt, create: false}
  - {name: spare-bkt}
datasets:
  - {name: d, train: "gs://data-bkt/train.jsonl"}
  - {name: unused, train: "gs://spare-bkt/x.jsonl"}
tuning_jobs:
  - name: j
    base_model: meta/llama3_1@llama-3.1-8b
    custom_base_model: gs://base-bkt/ckpt/final
    tuning_mode: FULL
    dataset: d
    output_uri: gs://out-bkt/runs/j
iam:
  - {bucket: spare-bkt, member: "group:ml@example.com"}
"""
    )
    report = validate(spec)
    assert report.ok, [d.format() for d in report.diagnostics]
    assert report.spec is not None
    assert bucket_uses(report.spec, report) == {
        "base-bkt": ["job j custom_base_model"],
        "data-bkt": ["dataset d train"],
        "out-bkt": ["job j output"],
    }
    grants = derived_grants(report.spec, report)
    assert len(grants) == 6 and ("out-bkt", "gcp-sa-vertex-moss-ft") in grants
    # spec.iam adds grants elsewhere; it never removes or replaces a derived one.
    assert "spare-bkt" not in {b for b, _ in grants}
