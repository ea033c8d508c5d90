/**
 * A/B of the small echo on loopback: servers alternate, round after round,
 * each started fresh, pinned to core 0, with the wsbench load generator on
 * core 1, both at niceness -10 as in the harness (`loadgen echo`, 100 connections, 32-byte text, one message in
 * flight each, as the harness's echo_small_d1). Prints each window and the
 * medians of messages per second and of server CPU per message, which is
 * what a hot-path change moves (throughput on this shared 2-core machine
 * drifts by 10-20% between windows).
 *
 *   deno run -A bench/echo_ab.ts [--rounds 4] [--seconds 4] [--depth 1] \
 *     new='deno run -A bench/echo_server.ts {PORT}' \
 *     base='deno run -A /tmp/base/bench/echo_server.ts {PORT}'
 *
 * Bounded: rounds × servers × (seconds + 2) seconds.
 *
 * @module
 */

import { LOADGEN, median, parseArgs, startServer } from "./server_runs.ts";

const { options, servers } = parseArgs(Deno.args, { rounds: 4, seconds: 4, depth: 1 });

const rates = new Map<string, number[]>(servers.map(([name]) => [name, []]));
const costs = new Map<string, number[]>(servers.map(([name]) => [name, []]));
for (let round = 0; round < options.rounds; round++) {
  for (const [name, command] of servers) {
    const server = await startServer(command, { cpu: 0, nice: -10 });
    try {
      const load = await new Deno.Command("nice", {
        args: [
          "-n",
          "-10",
          "taskset",
          "-c",
          "1",
          LOADGEN,
          "echo",
          "-p",
          String(server.port),
          "-c",
          "100",
          "-d",
          String(options.depth),
          "-s",
          "32",
          "-w",
          "1",
          "-t",
          String(options.seconds),
          "--pid",
          String(server.process.pid),
          "--json-only",
        ],
        stdout: "piped",
        stderr: "null",
      }).output();
      const result = JSON.parse(new TextDecoder().decode(load.stdout));
      if (result.ok !== true) throw new Error(`${name}: loadgen failed`);
      const rate = result.msgs_per_s as number;
      const microseconds = (result.cpu.server_pct / 100) / rate * 1e6;
      rates.get(name)!.push(rate);
      costs.get(name)!.push(microseconds);
      console.log(
        `round ${round + 1} ${name}: ${Math.round(rate)} msg/s, ` +
          `${microseconds.toFixed(2)} µs server CPU per message`,
      );
    } finally {
      server.process.kill("SIGKILL");
      await server.process.status;
    }
  }
}
console.log(
  "\n| server | msg/s (median) | server CPU µs/msg (median) | windows (msg/s) |\n" +
    "| --- | ---: | ---: | --- |",
);
for (const [name] of servers) {
  const r = rates.get(name)!;
  console.log(
    `| ${name} | ${Math.round(median(r))} | ${median(costs.get(name)!).toFixed(2)} | ${
      r.map(Math.round).join(", ")
    } |`,
  );
}
