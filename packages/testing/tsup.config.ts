import { packageConfig } from "../../scripts/tsup-config.mjs"

// SimServer (the node entry point) imports the main entry point by the package's name: one Simulator class
export default packageConfig(["src/index.ts", "src/node.ts"], ["@sluice/testing"])
