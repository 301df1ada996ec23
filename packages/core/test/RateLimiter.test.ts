import { LimiterStore } from "@sluice/core"
import { limiterBehaviourSuite } from "./suite/limiterSuite.js"

limiterBehaviourSuite("memory store", LimiterStore.layerMemory)
