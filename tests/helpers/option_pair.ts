/**
 * Servers that differ only in `runtimeInternals`, and one plain-HTTP
 * exchange with either: what tests of that option compare.
 *
 * Test tooling, not part of the published library.
 *
 * @module
 */

import type { Handlers } from "../../mod.ts";
import { maskDate } from "./http_date.ts";
import { startServer } from "./harness.ts";
import { RawClient } from "./raw_client.ts";

/** The same handlers on a server with `runtimeInternals` on (first) and one with it off. */
export function serversOnAndOff(handlers: Handlers<undefined>) {
  return [true, false].map((runtimeInternals) => startServer({ runtimeInternals }, handlers));
}

/** One request on its own connection (`Connection: close`): the whole answer, Date masked. */
export async function exchange(
  port: number,
  method: string,
  target: string,
  host = "127.0.0.1",
): Promise<string> {
  using raw = await RawClient.connect(port);
  await raw.write(`${method} ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  return maskDate(await raw.readToEnd());
}
