"""The Open Inference Protocol's gRPC form (``serve --grpc-port``), in each worker beside its HTTP.

The service and messages are the protocol's ``inference.GRPCInferenceService``, as compiled in
tritonclient's ``tritonclient.grpc`` package (Triton's service is the protocol's plus extras,
which answer UNIMPLEMENTED here): a KServe or Triton gRPC client calls the same methods. Every
worker binds the same port (gRPC sets SO_REUSEPORT on Linux), so the kernel spreads connections
over the workers as it does for uvicorn's HTTP socket. Requests go through the same checks,
token and micro-batcher as the HTTP form; a refusal is a gRPC status with the same message.
"""

import hmac

import numpy as np

from ..text.tokenizer import check_texts
from . import oip_codec
from .oip_codec import ProtocolError
from .open_inference import PLATFORMS, SERVER, VERSION

STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED",
          503: "UNAVAILABLE"}


def protos():
    """(grpc, service_pb2, service_pb2_grpc), or None when tritonclient's gRPC part is missing."""
    try:
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc
    except ImportError:
        return None
    return grpc, service_pb2, service_pb2_grpc


async def start(host, port, models, batcher, token, max_texts, max_bytes):
    """Start the gRPC server of this worker and return it (``await server.stop(grace)`` stops it)."""
    grpc, pb, pb_grpc = protos()

    async def refuse(context, error):
        await context.abort(getattr(grpc.StatusCode, STATUS.get(error.status, "INVALID_ARGUMENT")), error.message)

    def check_token(context):
        if token:
            given = dict(context.invocation_metadata()).get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise ProtocolError(401, "missing or wrong token; send the metadata authorization: Bearer TOKEN")

    def model(name, version):
        if models.predictor is None:
            raise ProtocolError(503, f"not ready: {models.error}")
        if name not in models.predictor.models:
            raise ProtocolError(404, f"unknown model {name!r}; the models are listed at GET /v1/models")
        if version not in ("", VERSION):
            raise ProtocolError(404, f"model {name!r} has no version {version!r}; its one version is {VERSION!r}")
        return models.predictor.models[name][1]  # its manifest

    def handled(method):
        """A servicer method whose ProtocolError (and InputError) become the gRPC status."""
        async def run(self, request, context):
            try:
                return await method(self, request, context)
            except ProtocolError as e:
                await refuse(context, e)
            except ValueError as e:  # InputError from check_texts: a lone surrogate
                await refuse(context, ProtocolError(400, str(e)))
        return run

    class Service(pb_grpc.GRPCInferenceServiceServicer):
        # The probes need no token, as over HTTP.
        async def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=True)

        async def ServerReady(self, request, context):
            return pb.ServerReadyResponse(ready=models.predictor is not None)

        @handled
        async def ModelReady(self, request, context):
            check_token(context)
            try:
                model(request.name, request.version)
            except ProtocolError as e:
                if e.status == 503:
                    return pb.ModelReadyResponse(ready=False)
                raise
            return pb.ModelReadyResponse(ready=True)

        @handled
        async def ServerMetadata(self, request, context):
            check_token(context)
            return pb.ServerMetadataResponse(**SERVER)

        @handled
        async def ModelMetadata(self, request, context):
            check_token(context)
            labels = model(request.name, request.version)["labels"]
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=request.name, versions=[VERSION], platform=PLATFORMS[models.predictor.info[request.name].runtime],
                inputs=[tensor(name=oip_codec.INPUT, datatype="BYTES", shape=[-1])],
                outputs=[tensor(name=oip_codec.PROBABILITIES, datatype="FP32", shape=[-1, len(labels)]),
                         tensor(name=oip_codec.LABELS, datatype="BYTES", shape=[len(labels)])])

        @handled
        async def ModelInfer(self, request, context):
            check_token(context)
            labels = model(request.model_name, request.model_version)["labels"]
            texts, wanted = read_request(request)
            if len(texts) > max_texts:
                raise ProtocolError(413, f"{len(texts):,} texts is over the limit of {max_texts:,} per request; "
                                         "split them")
            check_texts(texts, where=f"input {oip_codec.INPUT!r}: element")
            name = request.model_name
            results = await batcher.submit(texts, [name], None, full=True)
            probabilities = np.array([list(r[name]["probabilities"].values()) for r in results], dtype="<f4")
            values = {oip_codec.PROBABILITIES: ("FP32", probabilities.shape, probabilities.tobytes()),
                      oip_codec.LABELS: ("BYTES", [len(labels)], oip_codec.bytes_tensor(labels))}
            reply = pb.ModelInferResponse(model_name=name, model_version=VERSION, id=request.id)
            for output in wanted:
                datatype, shape, raw = values[output]
                reply.outputs.add(name=output, datatype=datatype, shape=list(shape))
                reply.raw_output_contents.append(raw)
            return reply

    def read_request(request):
        """(texts, output names) of a ModelInferRequest, checked as the HTTP form's are."""
        if len(request.inputs) != 1 or request.inputs[0].name != oip_codec.INPUT:
            raise ProtocolError(400, f"inputs are {[t.name for t in request.inputs]}; the model takes one input, "
                                     f"{oip_codec.INPUT!r} (BYTES, shape [-1] or [-1, 1])")
        tensor, where = request.inputs[0], f"input {oip_codec.INPUT!r}"
        oip_codec.check_datatype(tensor.datatype)
        shape = list(tensor.shape)
        oip_codec.check_shape(shape)
        if request.raw_input_contents:
            if len(request.raw_input_contents) != 1:
                raise ProtocolError(400, f"{len(request.raw_input_contents)} raw input contents for one input")
            texts = oip_codec.read_bytes_elements(request.raw_input_contents[0], where)
        else:
            texts = []
            for number, data in enumerate(tensor.contents.bytes_contents, start=1):
                try:
                    texts.append(data.decode("utf-8"))
                except UnicodeDecodeError as e:
                    raise ProtocolError(400, f"{where}: element {number} is not valid UTF-8 ({e.reason} at byte "
                                             f"{e.start}); send UTF-8 text") from None
        oip_codec.check_count(shape, texts)
        wanted = [output.name for output in request.outputs] or list(oip_codec.OUTPUTS)
        unknown = [name for name in wanted if name not in oip_codec.OUTPUTS]
        if unknown:
            raise ProtocolError(400, f"output {unknown[0]!r} is not one of the model's outputs {list(oip_codec.OUTPUTS)}")
        return texts, list(dict.fromkeys(wanted))

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_bytes), ("grpc.so_reuseport", 1)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Service(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server
