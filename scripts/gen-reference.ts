// npm run gen:reference — writes docs/resources.md, the resource reference, from the resource model
// (control-plane/resources/reference.ts). test/control-plane/reference.test.ts fails while the
// committed file differs from what this writes.
import { writeFileSync } from "node:fs";
import { referenceMarkdown } from "../control-plane/resources/reference.ts";

writeFileSync(new URL("../docs/resources.md", import.meta.url), referenceMarkdown());
