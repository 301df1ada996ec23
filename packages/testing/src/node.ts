/**
 * The Node entry point, `@sluice/testing/node`: the simulator over HTTP (`SimServer`), on `@effect/platform-node`
 * (an optional peer dependency, needed only here). The main entry point (`Simulator`, `SimFetch`, …) does not
 * load it.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as SimServer from "./SimServer.js"
