"""A stand-in for ``python -m trainer`` in fast unit tests of the job scheduler.

It accepts the trainer's job flags, checks the dataset exists, and copies the base model to
``<output>/postprocess/node-0/checkpoints/{checkpoint-1,final}`` through the GCS emulator.
A training path containing ``slow`` makes it run for 10 minutes (cancel and queue tests);
``FAKE_TRAINER_SLEEP`` adds seconds, ``FAKE_TRAINER_FAIL`` makes it fail.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2.credentials import Credentials


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base-model", required=True)
    p.add_argument("--train-data", required=True)
    p.add_argument("--validation-data")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--tuning-mode")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--learning-rate")
    p.add_argument("--learning-rate-multiplier")
    p.add_argument("--adapter-size")
    args, _ = p.parse_known_args()
    print(f"fake trainer: {' '.join(sys.argv[1:])}", flush=True)
    # A dataset path containing "slow" keeps it running (cancel and queue tests).
    time.sleep(
        float(os.environ.get("FAKE_TRAINER_SLEEP", "0")) + (600 if "slow" in args.train_data else 0)
    )
    if "fail" in args.train_data:
        # What a real trainer says when storage refuses it: an emulator URL and a local path.
        print(
            f"error: 404 GET http://127.0.0.1:4443/storage/v1/b/x/o/{args.train_data[5:]} "
            f"while writing {os.environ.get('TUNESTACK_HOME', '/tmp')}/local/logs/out.txt",
            flush=True,
        )
        return 3
    if os.environ.get("FAKE_TRAINER_FAIL"):
        print("error: fake failure", flush=True)
        return 3
    token = os.environ.get("TUNESTACK_STORAGE_TOKEN")
    gcs = storage.Client(
        project="x",
        credentials=Credentials(token=token) if token else AnonymousCredentials(),
        client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]},
    )
    bucket, _, path = args.train_data[5:].partition("/")
    if not gcs.bucket(bucket).blob(path).exists():
        print(f"error: {args.train_data} not found", flush=True)
        return 2
    out_bucket, _, prefix = args.output_dir[5:].partition("/")
    for ckpt in [f"checkpoint-{e}" for e in range(1, args.epochs + 1)] + ["final"]:
        for f in Path(args.base_model).iterdir():
            gcs.bucket(out_bucket).blob(
                f"{prefix.rstrip('/')}/postprocess/node-0/checkpoints/{ckpt}/{f.name}".lstrip("/")
            ).upload_from_filename(str(f))
    print("fake trainer: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
