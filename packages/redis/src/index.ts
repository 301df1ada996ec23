/**
 * @since 0.1.0
 */
export * as RedisLimiterStore from "./RedisLimiterStore.js"

/**
 * @since 0.2.0
 */
export * as RedisKeyValueStore from "./RedisKeyValueStore.js"
