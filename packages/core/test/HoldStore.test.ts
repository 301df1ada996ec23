/**
 * The memory `HoldStore` under the shared hold suite (virtual time).
 */
import { HoldStore } from "@sluice/core"
import { holdSuite } from "./suite/holdSuite.js"

holdSuite("HoldStore.makeMemory", HoldStore.makeMemory, (effect) => effect)
