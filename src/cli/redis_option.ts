/**
 * `tsunagu serve --redis URL`: the Redis broker the flags describe, checked
 * once before the server starts so that a wrong password or a URL that is
 * not Redis stops the start (exit 1, with the reason) instead of retrying
 * forever. An unreachable Redis does not: the server starts, serves local
 * rooms, and the broker keeps trying.
 *
 * @module
 */

import { StartError } from "./io.ts";
import type { Logger } from "./logger.ts";
import type { ServeConfig } from "./serve_flags.ts";
import { checkRedis, RedisBroker, type RedisBrokerOptions } from "../server/redis_broker.ts";
import { redactUrl, RedisError } from "../server/redis_connection.ts";

/** The environment variable that may hold the Redis password (off the command line). */
export const REDIS_PASSWORD_ENV = "TSUNAGU_REDIS_PASSWORD";

function passwordFromEnv(): string | undefined {
  try {
    return Deno.env.get(REDIS_PASSWORD_ENV) || undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new StartError(
        `reading ${REDIS_PASSWORD_ENV} needs --allow-env=${REDIS_PASSWORD_ENV} (or leave it unset)`,
        1,
      );
    }
    throw error;
  }
}

/** Whether the environment variable may be read without prompting or failing. */
function mayReadEnv(): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable: REDIS_PASSWORD_ENV }).state ===
      "granted";
  } catch {
    return false;
  }
}

/** The broker for `--redis`, or undefined without the flag. */
export async function openRedisBroker(
  config: ServeConfig,
  logger: Logger,
): Promise<RedisBroker | undefined> {
  if (config.redisUrl === undefined) return undefined;
  const shown = redactUrl(config.redisUrl);
  const options: RedisBrokerOptions = {
    url: config.redisUrl,
    password: mayReadEnv() ? passwordFromEnv() : undefined,
    prefix: config.redisPrefix,
    onStateChange(up, reason) {
      if (up) logger.info("redis-up", `redis ${shown}: connected, rooms shared`, { url: shown });
      else {
        logger.error("redis-down", `redis ${shown}: ${reason}; rooms are local until it is back`, {
          url: shown,
          reason,
        });
      }
    },
  };
  try {
    await checkRedis(options);
  } catch (error) {
    if (!(error instanceof RedisError)) throw error;
    if (error.kind === "unreachable" || error.kind === "timeout" || error.kind === "closed") {
      logger.error("redis-unreachable", `redis ${shown}: ${error.message}; starting anyway`, {
        url: shown,
        reason: error.message,
      });
    } else {
      const hint = error.kind === "auth" && !mayReadEnv()
        ? ` (${REDIS_PASSWORD_ENV} was not read: it needs --allow-env=${REDIS_PASSWORD_ENV})`
        : "";
      throw new StartError(`redis ${shown}: ${error.message}${hint}`, 1);
    }
  }
  return new RedisBroker(options);
}
