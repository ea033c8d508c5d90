/**
 * tsunagu (つなぐ, "to connect"): an RFC 6455 WebSocket server for Deno,
 * written in plain TypeScript on `Deno.listen`, with no dependencies.
 *
 * The protocol lives in pure modules (handshake, frame parser, message
 * assembler) that turn bytes into values and back; the server and connection
 * own sockets, timers and lifecycle.
 *
 * @example Echo server
 * ```ts
 * import { serve } from "@tsunagu/ws";
 *
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, {
 *   message(socket, data) {
 *     socket.send(data); // text stays text, binary stays binary
 *   },
 * });
 * console.log(`listening on ${server.url}`);
 * await server.shutdown();
 * ```
 *
 * @module
 */

export { serve, Server, type ShutdownOptions } from "./src/server/server.ts";
export {
  type BinaryType,
  type CloseInfo,
  ReadyState,
  type SendData,
  Socket,
  /** The same class as {@linkcode Socket}, under the name it had before clients existed. */
  Socket as ServerWebSocket,
  type SocketEventHandler,
} from "./src/connection/socket.ts";
export { type ConnectionOptions, type SocketHandlers } from "./src/connection/options.ts";
export type {
  Handlers,
  RequestInfo,
  ServeOptions,
  UpgradeAccept,
  UpgradeInfo,
} from "./src/server/options.ts";
export type { ReadMode } from "./src/connection/byte_reader.ts";
export { type ClientWebSocket, connect, type ConnectOptions } from "./src/client/client.ts";
export {
  createClientKey,
  encodeClientRequest,
  parseResponseHead,
  type ResponseHead,
  validateServerResponse,
} from "./src/protocol/client_handshake.ts";
export { formatPrometheus, type ServerMetrics } from "./src/server/metrics.ts";
export type { Broker, BrokerDeliver, BrokerMetrics } from "./src/server/broker.ts";
export { ChannelBroker } from "./src/server/channel_broker.ts";
export {
  serveInWorker,
  serveWorkers,
  type WorkerInit,
  workerInit,
  WorkerPool,
  type WorkersOptions,
} from "./src/server/workers.ts";
export { checkRedis, RedisBroker, type RedisBrokerOptions } from "./src/server/redis_broker.ts";
export { RedisError } from "./src/server/redis_connection.ts";
export {
  type DeflateAgreement,
  type DeflateParams,
  negotiateDeflate,
  type PerMessageDeflateOptions,
} from "./src/protocol/permessage_deflate.ts";
export {
  CloseCode,
  type ClosePayload,
  type ClosePayloadResult,
  decodeClosePayload,
  encodeClosePayload,
  encodeFrame,
  encodeMaskedFrame,
  encodeTextFrame,
  isValidCloseCode,
  Opcode,
} from "./src/protocol/frame.ts";
export { unmask } from "./src/protocol/mask.ts";
export {
  type FrameHandler,
  FrameParser,
  type FrameParserOptions,
} from "./src/protocol/frame_parser.ts";
export {
  type AssemblyBudget,
  type BufferLender,
  MessageAssembler,
  type MessageAssemblerOptions,
  type MessageHandler,
} from "./src/protocol/message.ts";
export {
  acceptKey,
  encodeRejection,
  encodeSwitchingProtocols,
  findHeadEnd,
  type HandshakeRejection,
  parseRequestHead,
  type RequestHead,
  type SwitchingProtocolsOptions,
  type UpgradeRequest,
  validateUpgrade,
} from "./src/protocol/handshake.ts";
