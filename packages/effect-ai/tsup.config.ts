import { packageConfig } from "../../scripts/tsup-config.mjs"

export default packageConfig(["src/index.ts"])
