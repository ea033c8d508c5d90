/**
 * `tsunagu connect URL`: a WebSocket client on the terminal.
 *
 * @module
 */

import type { ConnectCommand } from "./client_flags.ts";
import { usageHint } from "./args.ts";
import { type CliIo, pathError, permissionError } from "./io.ts";
import { type ClientWebSocket, connect } from "../client/client.ts";

/**
 * `tsunagu connect URL`: a client on the terminal. Lines of stdin go out as
 * text messages; messages received are printed to stdout, one per line;
 * status lines go to stderr. At the end of stdin, once the server has been
 * quiet for `wait` ms (replies still on their way would be dropped after
 * our close frame, as the standard WebSocket drops them in CLOSING), the
 * connection is closed with 1000. Exit 0 after a clean close, 1 otherwise;
 * 2 when the `--ca` file cannot be read. `caFile` adds trusted certificates
 * (PEM) for `wss://`: a private CA, or a self-signed server certificate.
 */
export async function runConnect(
  { url, protocols, wait, deflate, caFile }: ConnectCommand,
  io: CliIo,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  let caCerts: string[] | undefined;
  if (caFile !== undefined) {
    try {
      caCerts = [await Deno.readTextFile(caFile)];
    } catch (error) {
      const failure = pathError(
        error,
        `cannot read --ca file ${JSON.stringify(caFile)}`,
        "no such file",
      );
      err(`tsunagu: ${failure.message}`);
      if (failure.exitCode === 2) err(usageHint("connect"));
      return failure.exitCode;
    }
    if (!caCerts[0].includes("-----BEGIN CERTIFICATE-----")) {
      err(`tsunagu: --ca file ${JSON.stringify(caFile)} holds no PEM certificate`);
      err(usageHint("connect"));
      return 2;
    }
  }
  let socket: ClientWebSocket;
  try {
    socket = await connect(url, { protocols, perMessageDeflate: deflate, caCerts });
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      err(`tsunagu: ${permissionError(error, "--allow-net").message}`);
      return 1;
    }
    const message = (error as Error).message;
    // rustls names an untrusted chain UnknownIssuer (or a bad signature for
    // the wrong CA); say what to do about it.
    const hint = /certificate|UnknownIssuer|BadSignature/i.test(message)
      ? caFile === undefined
        ? " (for a private CA or a self-signed certificate, pass --ca FILE)"
        : ` (is ${caFile} the CA that signed the server's certificate?)`
      : "";
    err(`tsunagu: cannot connect to ${url}: ${message}${hint}`);
    return 1;
  }
  const agreed = [
    socket.protocol ? `subprotocol ${socket.protocol}` : "",
    socket.extensions ? socket.extensions.split(";")[0] : "",
  ].filter(Boolean).join(", ");
  err(`connected to ${url}${agreed ? ` (${agreed})` : ""}`);
  let lastHeard = Date.now();
  const printing = (async () => {
    for await (const message of socket) {
      lastHeard = Date.now();
      out(typeof message === "string" ? message : `<binary ${message.length} bytes>`);
    }
  })();
  const sending = (async () => {
    const input = (io.stdin ?? Deno.stdin.readable).pipeThrough(new TextDecoderStream());
    let pending = "";
    for await (const chunk of input) {
      if (socket.readyState !== 1) break;
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        socket.send(pending.slice(0, newline).replace(/\r$/, ""));
        pending = pending.slice(newline + 1);
      }
      // A long input to a slow server: wait for the queue rather than fill it.
      if (socket.bufferedAmount > 1024 * 1024) await socket.drained();
    }
    if (pending !== "" && socket.readyState === 1) socket.send(pending);
    // Everything typed has gone out: close once the replies have stopped.
    await socket.drained();
    lastHeard = Math.max(lastHeard, Date.now());
    while (socket.readyState === 1 && Date.now() - lastHeard < wait) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, wait)));
    }
    socket.close(1000);
  })();
  // stdin may still be open when the server closes first: its reader is left behind.
  sending.catch(() => {});
  const closed = await socket.closed;
  await printing;
  err(`closed ${closed.code}${closed.reason ? ` ${JSON.stringify(closed.reason)}` : ""}`);
  return closed.wasClean ? 0 : 1;
}
