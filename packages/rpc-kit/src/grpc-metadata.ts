import { decodeBinaryHeader, encodeBinaryHeader } from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";

/**
 * Conversions between grpc-js Metadata and the Fetch API Headers that the
 * Connect programming model uses. Binary (`-bin`) values are base64 in
 * Headers, as in Connect, and Buffers in Metadata, as grpc-js wants.
 * Callers convert lazily: it costs microseconds per call.
 */

/** Copies Metadata into new Headers. */
export function metadataToHeaders(metadata: Metadata): Headers {
  const headers = new Headers();
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    const binary = key.endsWith("-bin");
    for (const v of values) {
      if (binary) headers.append(key, encodeBinaryHeader(typeof v === "string" ? Buffer.from(v) : v));
      else headers.append(key, typeof v === "string" ? v : v.toString());
    }
  }
  return headers;
}

/** Copies Headers into Metadata (a new one unless `into` is given), skipping HTTP/2 and gRPC protocol headers. */
export function headersToMetadata(headers: Headers, into: Metadata = new Metadata()): Metadata {
  headers.forEach((value, key) => {
    if (
      key.startsWith(":") ||
      key.startsWith("grpc-") ||
      key === "content-type" ||
      key === "te" ||
      key === "user-agent"
    ) {
      return;
    }
    if (key.endsWith("-bin")) {
      // Headers joins repeated values with ", "; each part is one base64 value.
      for (const part of value.split(",")) into.add(key, Buffer.from(decodeBinaryHeader(part.trim())));
    } else {
      into.add(key, value);
    }
  });
  return into;
}

/** True when Headers has no entries (avoids allocating Metadata for nothing). */
export function isEmptyHeaders(headers: Headers): boolean {
  for (const _ of headers.keys()) return false;
  return true;
}
