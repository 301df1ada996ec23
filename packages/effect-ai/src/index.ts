/**
 * @since 0.1.0
 */
export * as GovernedHttpClient from "./GovernedHttpClient.js"
