/**
 * The package version, one place for every command.
 *
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };

/**
 * The package version, from `deno.json`.
 *
 * @example
 * ```ts
 * import { VERSION } from "@tsunagu/ws/cli";
 * console.log(VERSION); // e.g. "0.1.0"
 * ```
 */
export const VERSION: string = denoJson.version;
