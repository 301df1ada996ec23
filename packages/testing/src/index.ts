/**
 * @since 0.1.0
 */
export * as Scenario from "./Scenario.js"
/**
 * @since 0.1.0
 */
export * as SimConfig from "./SimConfig.js"
/**
 * @since 0.1.0
 */
export * as SimFetch from "./SimFetch.js"
/**
 * @since 0.1.0
 */
export * as SimStats from "./SimStats.js"
/**
 * @since 0.1.0
 */
export * as Simulator from "./Simulator.js"
/**
 * @since 0.1.0
 */
export * as SimClock from "./SimClock.js"
/**
 * @since 0.1.0
 */
export * as VirtualTime from "./VirtualTime.js"
/**
 * @since 0.1.0
 */
export * as CallStats from "./CallStats.js"
