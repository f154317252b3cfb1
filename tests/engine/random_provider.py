"""A stand-in for the `random` resource provider, for the end-to-end tests only.

The Go module proxy reachable here refuses the pulumi-random provider module, so its plugin
cannot be built on this machine (see docs/e2e.md). This plugin speaks the same provider gRPC
protocol for the two resources mlplane uses, `RandomPassword` and `RandomString`: it generates
`result` with the `secrets` module on create, keeps it on refresh, and replaces the resource
when an input changes, as the real provider does. Everything else in the e2e runs for real.

Run as `python -m tests.engine.random_provider`; it prints its port like every plugin.
"""

from __future__ import annotations

import secrets
import string
import sys
from concurrent import futures

import grpc
from google.protobuf import empty_pb2, struct_pb2
from google.protobuf.json_format import MessageToDict
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

VERSION = "4.21.1"
TYPES = ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString")


def _generate(inputs: dict) -> str:
    alphabet = ""
    if inputs.get("lower", True):
        alphabet += string.ascii_lowercase
    if inputs.get("upper", True):
        alphabet += string.ascii_uppercase
    if inputs.get("numeric", inputs.get("number", True)):
        alphabet += string.digits
    if inputs.get("special", True):
        alphabet += inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
    return "".join(secrets.choice(alphabet) for _ in range(int(inputs.get("length", 16))))


def _struct(value: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


class RandomProvider(provider_pb2_grpc.ResourceProviderServicer):
    def GetPluginInfo(self, request, context):  # noqa: N802 (gRPC names)
        return plugin_pb2.PluginInfo(version=VERSION)

    def GetSchema(self, request, context):  # noqa: N802
        return provider_pb2.GetSchemaResponse(schema='{"name": "random", "version": "%s"}' % VERSION)

    def CheckConfig(self, request, context):  # noqa: N802
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request, context):  # noqa: N802
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(self, request, context):  # noqa: N802
        return provider_pb2.ConfigureResponse(acceptSecrets=False, supportsPreview=True)

    def Check(self, request, context):  # noqa: N802
        if request.type not in TYPES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"stand-in random provider: unsupported {request.type}")
        return provider_pb2.CheckResponse(inputs=request.news)

    def Diff(self, request, context):  # noqa: N802
        olds = MessageToDict(request.olds)
        news = MessageToDict(request.news)
        changed = sorted(k for k in set(olds) | set(news) if k != "result" and olds.get(k) != news.get(k))
        if not changed:
            return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME, replaces=changed, diffs=changed, deleteBeforeReplace=False
        )

    def Create(self, request, context):  # noqa: N802
        inputs = MessageToDict(request.properties)
        if request.preview:
            return provider_pb2.CreateResponse(id="", properties=_struct(inputs))
        value = _generate(inputs)
        return provider_pb2.CreateResponse(id=value if "String" in request.type else "none", properties=_struct({**inputs, "result": value}))

    def Read(self, request, context):  # noqa: N802
        return provider_pb2.ReadResponse(id=request.id, properties=request.properties, inputs=request.inputs)

    def Update(self, request, context):  # noqa: N802
        return provider_pb2.UpdateResponse(properties=request.olds)

    def Delete(self, request, context):  # noqa: N802
        return empty_pb2.Empty()

    def Cancel(self, request, context):  # noqa: N802
        return empty_pb2.Empty()


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(RandomProvider(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
