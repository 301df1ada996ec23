/**
 * @since 0.1.0
 */
export * as RedisLimiterStore from "./RedisLimiterStore.js"
