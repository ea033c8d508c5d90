/**
 * wss:// end to end with the committed self-signed test certificate
 * (tests/fixtures/tls_cert.pem, for 127.0.0.1 and localhost; its key is
 * tests/fixtures/tls_key.pem). Two honest clients, both verifying the
 * certificate:
 *
 * - `Deno.connectTls` with the certificate as its only CA, doing the
 *   WebSocket handshake and frames by hand;
 * - Deno's own `WebSocket`, which cannot be given a CA at run time, run in a
 *   subprocess started with `--cert tests/fixtures/tls_cert.pem`.
 *
 * A client without the certificate must be refused, which shows the
 * verification is real. Regenerate the fixture (valid until 2126) with:
 *
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
 *     -days 36500 -subj "/CN=localhost/O=tsunagu test" \
 *     -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
 *     -addext "basicConstraints=critical,CA:FALSE" \
 *     -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=serverAuth" \
 *     -keyout tests/fixtures/tls_key.pem -out tests/fixtures/tls_cert.pem
 */

import assert from "node:assert/strict";
import { serve } from "../../mod.ts";
import { CHAT_PAGE_HTML } from "../../src/cli/chat.ts";
import { runCliProcess, runToEnd } from "../helpers/cli_process.ts";
import { ROOT, startExample } from "../helpers/example_process.ts";
import { clientFrame, closePayload } from "../helpers/frames.ts";
import { buildUpgradeRequest, expectedAccept, OP, withTimeout } from "../helpers/raw_client.ts";

const CERT_FILE = "tests/fixtures/tls_cert.pem";
const KEY_FILE = "tests/fixtures/tls_key.pem";
const cert = await Deno.readTextFile(new URL(CERT_FILE, ROOT));
const key = await Deno.readTextFile(new URL(KEY_FILE, ROOT));
/** How long a client subprocess may run before it is killed. */
const CLIENT_TIMEOUT_MS = 30_000;

/** A minimal WebSocket client over an already connected TLS stream. */
class TlsWsClient {
  #buffer = new Uint8Array(0);
  constructor(readonly conn: Deno.TlsConn) {}

  async #fill(what: string): Promise<void> {
    const chunk = new Uint8Array(4096);
    const n = await withTimeout(this.conn.read(chunk), 5_000, what);
    if (n === null) throw new Error(`connection ended while waiting for ${what}`);
    const next = new Uint8Array(this.#buffer.length + n);
    next.set(this.#buffer);
    next.set(chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = next;
  }

  async write(bytes: Uint8Array | string): Promise<void> {
    let data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    while (data.length > 0) data = data.subarray(await this.conn.write(data));
  }

  /** Reads the response head; returns the status line and headers. */
  async readHead(): Promise<{ status: string; headers: Headers }> {
    let end: number;
    while ((end = new TextDecoder().decode(this.#buffer).indexOf("\r\n\r\n")) < 0) {
      await this.#fill("the response head");
    }
    const [status, ...lines] = new TextDecoder().decode(this.#buffer.subarray(0, end)).split(
      "\r\n",
    );
    this.#buffer = this.#buffer.slice(end + 4);
    const headers = new Headers();
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    return { status, headers };
  }

  /** Reads one unfragmented server frame with a payload under 126 bytes. */
  async readFrame(): Promise<{ opcode: number; payload: Uint8Array }> {
    while (this.#buffer.length < 2) await this.#fill("a frame header");
    const length = this.#buffer[1] & 0x7f;
    assert.ok(length < 126, "small frames only");
    while (this.#buffer.length < 2 + length) await this.#fill("a frame payload");
    const frame = { opcode: this.#buffer[0] & 0x0f, payload: this.#buffer.slice(2, 2 + length) };
    this.#buffer = this.#buffer.slice(2 + length);
    return frame;
  }
}

Deno.test("tls: serve({cert, key}) speaks wss:// to a client that verifies the certificate", async () => {
  const server = serve({ port: 0, hostname: "127.0.0.1", cert, key }, {
    message(socket, data) {
      socket.send(data);
    },
  });
  try {
    assert.match(server.url, /^wss:\/\/127\.0\.0\.1:\d+$/);
    for (const hostname of ["127.0.0.1", "localhost"]) {
      const conn = await Deno.connectTls({ hostname, port: server.addr.port, caCerts: [cert] });
      try {
        const client = new TlsWsClient(conn);
        await client.write(buildUpgradeRequest({ path: "/secure", host: hostname }));
        const head = await client.readHead();
        assert.equal(head.status, "HTTP/1.1 101 Switching Protocols");
        assert.equal(
          head.headers.get("sec-websocket-accept"),
          expectedAccept("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        await client.write(
          clientFrame({ opcode: OP.TEXT, payload: `hello over tls via ${hostname}` }),
        );
        const echo = await client.readFrame();
        assert.equal(echo.opcode, OP.TEXT);
        assert.equal(new TextDecoder().decode(echo.payload), `hello over tls via ${hostname}`);
        await client.write(clientFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }));
        const close = await client.readFrame();
        assert.equal(close.opcode, OP.CLOSE);
        assert.equal((close.payload[0] << 8) | close.payload[1], 1000);
      } finally {
        conn.close();
      }
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("tls: a client that does not trust the certificate is refused", async () => {
  const server = serve({ port: 0, hostname: "127.0.0.1", cert, key });
  try {
    const conn = await Deno.connectTls({ hostname: "127.0.0.1", port: server.addr.port });
    try {
      await assert.rejects(
        () => withTimeout(conn.handshake(), 5_000, "TLS handshake"),
        /certificate/i,
      );
    } finally {
      conn.close();
    }
  } finally {
    await server.shutdown();
  }
});

/**
 * Runs Deno's WebSocket client in a subprocess (`deno eval`, trusting the
 * test certificate unless `trust` is false): it sends `message` once open and
 * prints `message …`, `error …` and `close CODE` lines.
 */
async function wsClientProcess(url: string, message: string, trust = true): Promise<string> {
  const code = `
    const timer = setTimeout(() => { console.log("timeout"); Deno.exit(3); }, 15000);
    const ws = new WebSocket(${JSON.stringify(url)});
    ws.onopen = () => ws.send(${JSON.stringify(message)});
    ws.onmessage = (e) => { console.log("message " + e.data); ws.close(1000, "done"); };
    ws.onerror = (e) => console.log("error " + (e.message ?? ""));
    ws.onclose = (e) => { console.log("close " + e.code); clearTimeout(timer); };
  `;
  const { stdout, stderr } = await runToEnd(
    Deno.execPath(),
    ["eval", ...(trust ? ["--cert", CERT_FILE] : []), code],
    CLIENT_TIMEOUT_MS,
  );
  return stdout + stderr;
}

Deno.test("tls: Deno's WebSocket client (started with --cert) talks wss:// to serve()", async () => {
  const server = serve({ port: 0, hostname: "127.0.0.1", cert, key }, {
    message(socket, data) {
      socket.send(`echo: ${data}`);
    },
  });
  try {
    const port = server.addr.port;
    const trusted = await wsClientProcess(`wss://localhost:${port}/x`, "hi");
    assert.match(trusted, /^message echo: hi\nclose 1000\n$/);
    const untrusted = await wsClientProcess(`wss://localhost:${port}/x`, "hi", false);
    assert.match(untrusted, /error .*(certificate|UnknownIssuer)/i);
    assert.doesNotMatch(untrusted, /message/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("tls: tsunagu serve --cert --key serves wss:// and the chat page over https://", async () => {
  const process = await startExample("src/cli/main.ts", ["--allow-net=127.0.0.1", "--allow-read"], [
    "serve",
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--mode",
    "chat",
    "--cert",
    CERT_FILE,
    "--key",
    KEY_FILE,
  ]);
  try {
    assert.equal(process.url.protocol, "wss:");
    assert.equal(process.url.pathname, "/chat");
    const port = process.url.port;
    const http = Deno.createHttpClient({ caCerts: [cert] });
    try {
      const page = await fetch(`https://localhost:${port}/`, { client: http });
      assert.equal(page.status, 200);
      assert.equal(await page.text(), CHAT_PAGE_HTML);
    } finally {
      http.close();
    }
    const chat = await wsClientProcess(
      `wss://localhost:${port}/chat`,
      JSON.stringify({ name: "tls", text: "secure hello" }),
    );
    const [first, second] = chat.split("\n");
    const relayed = JSON.parse(first.slice("message ".length));
    assert.deepEqual([relayed.name, relayed.text], ["tls", "secure hello"]);
    assert.equal(second, "close 1000");
    const status = await process.stop("SIGTERM");
    assert.equal(status.code, 0, process.output());
    assert.match(process.output(), /close 127\.0\.0\.1:\d+ \/chat 1000 "done"/);
  } finally {
    await process.close();
  }
});

Deno.test("tls: tsunagu serve with a file that is not PEM exits 2 with one line", async () => {
  const { code, stdout, stderr } = await runCliProcess([
    "serve",
    "--port=0",
    "--hostname=127.0.0.1",
    "--cert=deno.json",
    `--key=${KEY_FILE}`,
  ], ["--allow-net=127.0.0.1", "--allow-read"]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.deepEqual(stderr.trimEnd().split("\n"), [
    "tsunagu: invalid --cert or --key: No certificates found in certificate data",
    "Run 'tsunagu serve --help' for usage.",
  ]);
});
