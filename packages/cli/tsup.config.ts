import { packageConfig } from "../../scripts/tsup-config.mjs"

// main (the bin) imports the main entry point by the package's name: one copy of each class
export default packageConfig(["src/index.ts", "src/main.ts"], ["@sluice/cli"])
