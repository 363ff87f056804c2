"""Where the Scs wire types come from: the generated protobuf module
``cacheclient_pb2`` of the ``momento-wire-types`` package (install
``ringline[momento]``). Importing it imports grpcio too (the package's
``__init__`` loads its ``*_pb2_grpc`` stubs), but no grpcio I/O runs:
ringline.momento calls through ringline.grpc with these messages'
``SerializeToString`` / ``FromString``.
"""
try:
    from momento_wire_types import cacheclient_pb2 as pb
except ImportError as e:   # pragma: no cover - depends on the installation
    raise ImportError("ringline.momento needs the momento-wire-types package: "
                      "pip install 'ringline[momento]'") from e

__all__ = ["pb"]
