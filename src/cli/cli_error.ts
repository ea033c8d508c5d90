/**
 * A command line that cannot run: the error type every parser returns, and
 * the help topics it can point to.
 *
 * @module
 */

/**
 * Which help text to show: the overview or one command's (`serve`,
 * `connect`, `load`).
 *
 * @example
 * ```ts
 * import { usage, type HelpTopic } from "@tsunagu/ws/cli";
 * const topic: HelpTopic = "serve";
 * console.log(usage(topic));
 * ```
 */
export type HelpTopic = "main" | "serve" | "connect" | "load";

/**
 * A command line that cannot run: one message for the user (no `tsunagu:`
 * prefix) and the help topic the usage hint should point to.
 *
 * @example
 * ```ts
 * import { parseCliArgs } from "@tsunagu/ws/cli";
 * const parsed = parseCliArgs(["serve", "--port", "99999"]);
 * if ("error" in parsed) console.log(parsed.error); // invalid value "99999" for --port: …
 * ```
 */
export interface CliError {
  /** What is wrong, in one line. */
  error: string;
  /** The help topic for the usage hint. */
  topic: HelpTopic;
}

/** A {@linkcode CliError} pointing at `topic`'s help. */
export function fail(error: string, topic: HelpTopic = "serve"): CliError {
  return { error, topic };
}
