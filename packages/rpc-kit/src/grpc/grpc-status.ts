import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema, anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { StatusSchema } from "@demo/proto/google/rpc/status_pb";
import { Metadata as GrpcMetadata, type status as GrpcStatus, type Metadata } from "@grpc/grpc-js";
import { headersToMetadata, metadataToHeaders } from "./grpc-metadata.ts";

/**
 * ConnectError ⇄ gRPC status on the grpc-js engine. Codes map 1:1 (Connect's
 * Code enum is gRPC's). Details travel as a serialized google.rpc.Status in
 * the `grpc-status-details-bin` trailer, the format every gRPC implementation
 * reads; grpc-js wants the raw bytes there, not base64.
 */

export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/** The status object grpc-js sends for a ConnectError. */
export interface GrpcStatusObject {
  code: GrpcStatus;
  details: string;
  metadata: Metadata;
}

/** Encodes a ConnectError as a grpc-js status, details included. */
export function connectErrorToGrpcStatus(err: ConnectError): GrpcStatusObject {
  const metadata = headersToMetadata(err.metadata);
  if (err.details.length > 0) {
    const status = create(StatusSchema, {
      code: err.code,
      message: err.rawMessage,
      details: err.details.map((d) =>
        "desc" in d
          ? anyPack(d.desc, create(d.desc, d.value))
          : create(AnySchema, { typeUrl: `type.googleapis.com/${d.type}`, value: d.value }),
      ),
    });
    metadata.set(STATUS_DETAILS_KEY, Buffer.from(toBinary(StatusSchema, status)));
  }
  return { code: err.code as number as GrpcStatus, details: err.rawMessage, metadata };
}

/** Decodes a grpc-js status (a ServiceError on the client) into a ConnectError with its details. */
export function grpcStatusToConnectError(status: {
  code: number;
  details: string;
  metadata?: Metadata | null;
}): ConnectError {
  const code = status.code >= 1 && status.code <= 16 ? (status.code as Code) : Code.Unknown;
  const metadata = status.metadata ?? new GrpcMetadata();
  const err = new ConnectError(status.details, code, metadataToHeaders(metadata));
  const raw = metadata.get(STATUS_DETAILS_KEY)[0];
  if (raw !== undefined && typeof raw !== "string") {
    try {
      const decoded = fromBinary(StatusSchema, raw);
      err.details = decoded.details.map((any) => ({
        type: any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1),
        value: any.value,
      }));
    } catch {
      // Undecodable details are dropped; code and message still stand.
    }
  }
  return err;
}

/** grpc-message is percent-encoded: everything outside printable ASCII, and "%". */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
