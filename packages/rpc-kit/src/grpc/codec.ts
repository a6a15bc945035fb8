import { type DescMessage, type DescMethod, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";

/**
 * Protobuf on grpc-js: the one place messages become the Buffers grpc-js
 * sends and back, for the client (grpc-transport.ts) and the server engine
 * (server/grpc-engine.ts).
 */

/** A method's path and its request serializer and response deserializer, as a client uses them. */
export interface MethodCodec {
  readonly path: string;
  readonly procedure: string;
  readonly serialize: (value: unknown) => Buffer;
  readonly deserialize: (bytes: Buffer) => unknown;
}

const codecs = new WeakMap<DescMethod, MethodCodec>();

/** Path and protobuf-es (de)serializers of a method, built once per method. */
export function methodCodec(method: DescMethod): MethodCodec {
  let codec = codecs.get(method);
  if (codec === undefined) {
    codec = {
      path: `/${method.parent.typeName}/${method.name}`,
      procedure: `${method.parent.typeName}/${method.name}`,
      serialize: (value) => toBuffer(toBinary(method.input, value as MessageShape<DescMessage>)),
      deserialize: (bytes) => fromBinary(method.output, bytes),
    };
    codecs.set(method, codec);
  }
  return codec;
}

/** Views protobuf-es bytes as a Buffer without copying (grpc-js wants Buffers). */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A serializer of `desc` messages for grpc-js (a server's responses). */
export function serializerFor(desc: DescMessage): (value: unknown) => Buffer {
  return (value) => toBuffer(toBinary(desc, value as MessageShape<DescMessage>));
}
