// A setup file of every vitest project (vitest.config.ts): after each test file, whatever its
// outcome, the directories it made with tempDir() are removed. Registered first, so it runs after
// the file's own afterAll hooks (which stop the processes using them).
import { afterAll } from "vitest";
import { removeTempDirs } from "./temp.ts";

afterAll(removeTempDirs);
