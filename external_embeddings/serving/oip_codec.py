"""The Open Inference Protocol's (KServe v2) tensors on the wire: parse a request, encode a reply.

Pure bytes and JSON, no HTTP: ``open_inference`` gives it a body and takes back a body. The
JSON form carries a tensor's elements in ``data``; the binary tensor data extension puts the
JSON header first (its length in the ``Inference-Header-Content-Length`` HTTP header) and
then each binary tensor's raw bytes in the order of the header's tensors, a BYTES element as a
4-byte little-endian length and its bytes. Every fault of a request is a ``ProtocolError``
naming the tensor and what to send instead, raised before any text reaches a batch.
"""

import json
import struct

import numpy as np

INPUT = "text"  # the one input: a BYTES tensor of texts, shape [-1] or [-1, 1]
PROBABILITIES, LABELS = "probabilities", "labels"  # the outputs: FP32 [-1, labels] and BYTES [labels]
OUTPUTS = (PROBABILITIES, LABELS)
_LENGTH = struct.Struct("<I")


class ProtocolError(Exception):
    """A request answered with ``status`` and the protocol's error object ``{"error": message}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def bad(message):
    return ProtocolError(400, message)


class InferRequest:
    """What a parsed request asks: its texts, its id, and each wanted output with its form."""

    def __init__(self, texts, request_id, outputs):
        self.texts, self.id, self.outputs = texts, request_id, outputs  # outputs: {name: binary?}


def split_body(body, header_length):
    """(JSON header, binary part) of a body; ``header_length`` is the HTTP header's value or None."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit():
        raise bad(f"Inference-Header-Content-Length {header_length!r} is not a byte count; "
                  "send the length of the JSON header in bytes")
    length = int(header_length)
    if length > len(body):
        raise bad(f"Inference-Header-Content-Length {length:,} runs past the body of {len(body):,} bytes; "
                  "send the length of the JSON header in bytes")
    return body[:length], body[length:]


def parse_json(header):
    try:
        request = json.loads(header)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise bad(f"the request header is not valid JSON ({str(e)[:100]})") from None
    if not isinstance(request, dict):
        raise bad('the request must be a JSON object such as {"inputs": [...]}')
    return request


def parse_request(body, header_length, max_texts):
    """The ``InferRequest`` of an infer body, or a ``ProtocolError`` (400, or 413 over ``max_texts``)."""
    header, binary = split_body(body, header_length)
    request = parse_json(header)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad(f"id must be a string (got {type(request_id).__name__})")
    parameters = dict_field(request, "parameters", "the request")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise bad("parameter binary_data_output must be true or false")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad(f'inputs must be a list holding the one input tensor {INPUT!r}')
    if len(inputs) != 1 or not isinstance(inputs[0], dict) or inputs[0].get("name") != INPUT:
        names = [t.get("name") if isinstance(t, dict) else t for t in inputs]
        raise bad(f"inputs are {names}; the model takes one input, {INPUT!r} (BYTES, shape [-1] or [-1, 1])")
    texts, offset = read_input(inputs[0], binary, 0)
    if offset != len(binary):
        raise bad(f"the body holds {len(binary) - offset:,} bytes after the binary tensors; "
                  "send only the header and each binary input's bytes")
    if len(texts) > max_texts:
        raise ProtocolError(413, f"{len(texts):,} texts is over the limit of {max_texts:,} per request; split them")
    return InferRequest(texts, request_id, read_outputs(request.get("outputs"), binary_default))


def dict_field(tensor, key, where):
    value = tensor.get(key, {})
    if not isinstance(value, dict):
        raise bad(f"{where}: {key} must be a JSON object")
    return value


def read_input(tensor, binary, offset):
    """(texts, the offset after this tensor's bytes) of the input tensor, checked against its shape."""
    where = f"input {INPUT!r}"
    check_datatype(tensor.get("datatype"))
    shape = tensor.get("shape")
    check_shape(shape)
    size = dict_field(tensor, "parameters", where).get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise bad(f"{where}: binary_data_size must be a byte count (got {size!r})")
        if "data" in tensor:
            raise bad(f"{where} has both data and binary_data_size; send one of them")
        if offset + size > len(binary):
            raise bad(f"{where}: binary_data_size {size:,} runs past the body ({len(binary) - offset:,} bytes "
                      "left after the header); send the header's length and each tensor's bytes")
        texts = read_bytes_elements(binary[offset:offset + size], where)
        offset += size
    elif "data" in tensor:
        texts = flatten(tensor["data"], where)
    else:
        raise bad(f"{where} has neither data nor binary_data_size; send the texts in one of them")
    check_count(shape, texts)
    return texts, offset


def check_datatype(datatype):
    if datatype != "BYTES":
        raise bad(f"input {INPUT!r} has datatype {datatype!r}; send the texts as BYTES")


def check_shape(shape):
    """Shape [n] or [n, 1]: a list of n texts, or a column of them."""
    if (not isinstance(shape, list) or len(shape) not in (1, 2) or not all(type(d) is int and d >= 0 for d in shape)
            or (len(shape) == 2 and shape[1] != 1)):
        raise bad(f"input {INPUT!r} has shape {shape!r}; send shape [n] or [n, 1] for n texts")


def check_count(shape, texts):
    if shape[0] != len(texts):
        raise bad(f"input {INPUT!r} has shape {shape} but {len(texts):,} elements; send a shape that matches the data")
    if not texts:
        raise bad(f"input {INPUT!r} is empty; send at least one text")


def read_bytes_elements(raw, where):
    """The texts of a binary BYTES tensor: each a 4-byte little-endian length, then that many UTF-8 bytes."""
    texts, offset, end = [], 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise bad(f"{where}: element {len(texts) + 1} has a cut length ({end - offset} of 4 bytes); "
                      "send each element as a 4-byte little-endian length and its bytes")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise bad(f"{where}: element {len(texts) + 1} of {length:,} bytes runs past the tensor's "
                      f"{end:,} bytes; send each element as a 4-byte little-endian length and its bytes")
        try:
            texts.append(bytes(raw[offset:offset + length]).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise bad(f"{where}: element {len(texts) + 1} is not valid UTF-8 ({e.reason} at byte {e.start}); "
                      "send UTF-8 text") from None
        offset += length
    return texts


def flatten(data, where):
    """The texts of a JSON BYTES tensor: strings, flat or nested row-major as the protocol allows."""
    if not isinstance(data, list):
        raise bad(f"{where}: data must be a list of strings")
    texts = []
    for item in data:
        if isinstance(item, list):
            texts += flatten(item, where)
        elif isinstance(item, str):
            texts.append(item)
        else:
            raise bad(f"{where}: element {len(texts) + 1} is a {type(item).__name__}, not a string; "
                      "BYTES data are strings")
    return texts


def read_outputs(outputs, binary_default):
    """{output name: binary?} of the outputs asked for; all of them, in ``binary_default`` form, if none are."""
    if outputs is None:
        return dict.fromkeys(OUTPUTS, binary_default)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise bad("outputs must be a list of objects such as {\"name\": \"probabilities\"}")
    wanted = {}
    for output in outputs:
        name = output.get("name")
        if name not in OUTPUTS:
            raise bad(f"output {name!r} is not one of the model's outputs {list(OUTPUTS)}")
        binary = dict_field(output, "parameters", f"output {name!r}").get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise bad(f"output {name!r}: binary_data must be true or false")
        wanted[name] = binary
    return wanted


def bytes_tensor(texts):
    """A BYTES tensor's raw form: each element's 4-byte little-endian length, then its UTF-8 bytes."""
    parts = []
    for text in texts:
        data = text.encode("utf-8")
        parts += (_LENGTH.pack(len(data)), data)
    return b"".join(parts)


def encode_response(model_name, request, probabilities, labels):
    """(body, header length or None) of the reply: the JSON header, then the binary outputs' bytes."""
    tensors = {PROBABILITIES: ("FP32", list(probabilities.shape), probabilities),
               LABELS: ("BYTES", [len(labels)], labels)}
    header = {"model_name": model_name, "model_version": "1"}
    if request.id is not None:
        header["id"] = request.id
    header["outputs"] = []
    raw = []
    for name, binary in request.outputs.items():
        datatype, shape, value = tensors[name]
        tensor = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            data = bytes_tensor(value) if datatype == "BYTES" else np.ascontiguousarray(value, "<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            tensor["data"] = value if datatype == "BYTES" else value.ravel().tolist()
        header["outputs"].append(tensor)
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return (head + b"".join(raw), len(head)) if raw else (head, None)
