/**
 * @since 0.1.0
 */
export * as OpenAi from "./OpenAi.js"

/**
 * @since 0.1.0
 */
export * as OpenAiError from "./OpenAiError.js"

/**
 * @since 0.2.0
 */
export * as OpenAiMetrics from "./OpenAiMetrics.js"

/**
 * @since 0.1.0
 */
export * as OpenAiRetry from "./OpenAiRetry.js"

/**
 * @since 0.1.0
 */
export * as Parse from "./Parse.js"

/**
 * @since 0.1.0
 */
export * as Tiers from "./Tiers.js"

/**
 * @since 0.1.0
 */
export * as TokenEstimator from "./TokenEstimator.js"

/**
 * @since 0.1.0
 */
export * from "./Wrap.js"

/**
 * @since 0.1.0
 */
export * as BulkRunner from "./BulkRunner.js"

/**
 * @since 0.2.0
 */
export * as BulkExecutor from "./BulkExecutor.js"

/**
 * @since 0.2.0
 */
export * as OpenAiRouter from "./OpenAiRouter.js"

/**
 * The {@link OpenAiRouter} module under its 0.1.0 name (its Tag and namespace: `Routing.Routing`).
 *
 * @deprecated Since 0.2.0: use `OpenAiRouter` (the same module).
 * @since 0.1.0
 */
export * as Routing from "./OpenAiRouter.js"

/**
 * @since 0.2.0
 */
export * as BatchOffload from "./BatchOffload.js"

/**
 * @since 0.2.0
 */
export * as Pipeline from "./Pipeline.js"

/**
 * @since 0.2.0
 */
export * as PipelineFile from "./PipelineFile.js"

/**
 * @since 0.2.0
 */
export * as ResponseCache from "./ResponseCache.js"

/**
 * @since 0.2.0
 */
export * as Pricing from "./Pricing.js"

/**
 * @since 0.2.0
 */
export * as OpenAiHttp from "./OpenAiHttp.js"
