"""Drive dynamic providers through Pulumi's own provider host, as the engine does.

``python -u -m pulumi.dynamic`` is started as a subprocess (PYTHONPATH = repository root, so
``infra`` imports), its printed port is read, and the tests call Configure / Check / Create /
Diff / Read / Update / Delete over gRPC with properties serialized by Pulumi's own
``rpc.serialize_properties``, including ``__provider`` pickled by ``serialize_provider``.
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


class ProviderHost:
    """One ``pulumi.dynamic`` host process and a gRPC stub to it."""

    def __init__(
        self, provider: ResourceProvider, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        self.provider = provider
        self.serialized = serialize_provider(provider)
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), full_env.get("PYTHONPATH")])
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic"],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            # A file, not a pipe: an undrained pipe would block the host once it fills.
            stderr=(log or Path(os.devnull)).open("ab"),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            err = log.read_text() if log else ""
            raise RuntimeError(f"provider host did not start: {line!r} {err}")
        self.port = int(line)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        self.stub.Configure(
            provider_pb2.ConfigureRequest(args=struct_pb2.Struct(), acceptSecrets=False)
        )
        self.urn = f"urn:pulumi:test::tunestack::pulumi-python:dynamic/tunestack:{type(provider).__name__}::r"
        self.last_payloads: list[bytes] = []

    def using(self, provider: ResourceProvider) -> ProviderHost:
        """The same host process driving another provider (the engine shares one host too)."""
        view = copy.copy(self)
        view.provider = provider
        view.serialized = serialize_provider(provider)
        view.urn = self.urn.rsplit(":", 3)[0] + f":{type(provider).__name__}::r"
        view.last_payloads = []
        return view

    # -- serialization, as pulumi.dynamic.Resource + the engine do it
    def props(self, inputs: dict[str, Any]) -> struct_pb2.Struct:
        props = {**inputs, "__provider": self.serialized}
        struct = asyncio.run(rpc.serialize_properties(props, {}))
        self.last_payloads.append(struct.SerializeToString())
        return struct

    @staticmethod
    def outputs(struct: struct_pb2.Struct) -> dict[str, Any]:
        outs = rpc.deserialize_properties(struct)
        outs.pop("__provider", None)
        return outs

    # -- the RPCs
    def check(
        self, news: dict[str, Any], olds: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        resp = self.stub.Check(
            provider_pb2.CheckRequest(
                urn=self.urn, olds=self.props(olds or {}), news=self.props(news)
            )
        )
        return self.outputs(resp.inputs), [(f.property, f.reason) for f in resp.failures]

    def create(
        self, inputs: dict[str, Any], timeout: float | None = None
    ) -> tuple[str, dict[str, Any]]:
        resp = self.stub.Create(
            provider_pb2.CreateRequest(urn=self.urn, properties=self.props(inputs)), timeout=timeout
        )
        self.last_payloads.append(resp.SerializeToString())
        return resp.id, self.outputs(resp.properties)

    def diff(
        self, id_: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> provider_pb2.DiffResponse:
        return self.stub.Diff(
            provider_pb2.DiffRequest(
                id=id_, urn=self.urn, olds=self.props(olds), news=self.props(news)
            )
        )

    def read(self, id_: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        resp = self.stub.Read(
            provider_pb2.ReadRequest(id=id_, urn=self.urn, properties=self.props(props))
        )
        return resp.id, self.outputs(resp.properties)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        resp = self.stub.Update(
            provider_pb2.UpdateRequest(
                id=id_, urn=self.urn, olds=self.props(olds), news=self.props(news)
            )
        )
        return self.outputs(resp.properties)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self.stub.Delete(
            provider_pb2.DeleteRequest(id=id_, urn=self.urn, properties=self.props(props))
        )

    # -- lifecycle
    def kill(self) -> None:
        """SIGKILL, like a machine losing power mid-``up``."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> ProviderHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
