// The ABI enums are written twice: in the SDK the filters use (assembly/sdk/abi.ts, AssemblyScript,
// which Node cannot import) and in the host (host/abi.ts). The SDK's enum declarations are read
// with the TypeScript parser (AssemblyScript is TypeScript syntax), and every enum must have the
// same members with the same values on both sides.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import * as hostAbi from "../../host/abi.ts";

const SDK_ABI = fileURLToPath(new URL("../../assembly/sdk/abi.ts", import.meta.url));

type Members = Record<string, number>;

/** The SDK's name for an enum, where the host names it otherwise. */
const HOST_NAME: Record<string, string> = { WasmResult: "Status", FilterStatus: "Action" };

/**
 * Where the SDK differs from the host on purpose. FilterStatus is what the SDK lets a callback
 * return: Continue or Pause (the host's StopIteration); in ABI 0.2.x anything but Continue stops
 * the stream, so the SDK offers no StopAllIteration* variants.
 */
const KNOWN_DIFFERENCES: Record<string, { renamed: Record<string, string>; sdkLeavesOut: string[] }> = {
  FilterStatus: {
    renamed: { Pause: "StopIteration" },
    sdkLeavesOut: ["StopAllIterationAndBuffer", "StopAllIterationAndWatermark"],
  },
};

/**
 * The enum declarations of an AssemblyScript (TypeScript-syntax) file: members in order, with
 * explicit values (integer literals, negated or parenthesized) or the previous value plus one.
 * Anything else is refused, naming the member and line, rather than guessed.
 */
function parseEnums(source: string, fileName: string): Map<string, Members> {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const where = (node: ts.Node) =>
    `${fileName}:${file.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  const value = (node: ts.Expression, member: string): number => {
    if (ts.isNumericLiteral(node)) return Number(node.text);
    if (ts.isParenthesizedExpression(node)) return value(node.expression, member);
    if (ts.isPrefixUnaryExpression(node) && node.operator === ts.SyntaxKind.MinusToken)
      return -value(node.operand, member);
    throw new Error(`${where(node)}: cannot evaluate ${member} = ${node.getText(file)}`);
  };
  const enums = new Map<string, Members>();
  for (const statement of file.statements) {
    if (!ts.isEnumDeclaration(statement)) continue;
    const name = statement.name.text;
    const members: Members = {};
    let next = 0;
    for (const member of statement.members) {
      if (!ts.isIdentifier(member.name) && !ts.isStringLiteral(member.name))
        throw new Error(`${where(member)}: cannot read the name of a member of ${name}`);
      const memberName = member.name.text;
      const memberValue = member.initializer ? value(member.initializer, `${name}.${memberName}`) : next;
      if (!Number.isInteger(memberValue))
        throw new Error(`${where(member)}: ${name}.${memberName} is not an integer`);
      members[memberName] = memberValue;
      next = memberValue + 1;
    }
    enums.set(name, members);
  }
  return enums;
}

/** host/abi.ts's enums: its exported objects whose values are all integers. */
function hostEnums(): Map<string, Members> {
  const enums = new Map<string, Members>();
  for (const [name, value] of Object.entries(hostAbi)) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) continue;
    const entries = Object.entries(value);
    if (entries.length > 0 && entries.every(([, v]) => Number.isInteger(v)))
      enums.set(name, value as Members);
  }
  return enums;
}

/** The SDK enum's members as the host should have them (renames applied, omissions added). */
function expectedHostMembers(sdkName: string, sdk: Members, host: Members): Members {
  const known = KNOWN_DIFFERENCES[sdkName];
  const expected: Members = {};
  for (const [name, value] of Object.entries(sdk)) expected[known?.renamed[name] ?? name] = value;
  // What the SDK leaves out must still be in the host (with the host's value), or the exception is stale.
  for (const name of known?.sdkLeavesOut ?? []) expected[name] = host[name] ?? Number.NaN;
  return expected;
}

describe("ABI enums: assembly/sdk/abi.ts and host/abi.ts", () => {
  const sdk = parseEnums(readFileSync(SDK_ABI, "utf8"), "assembly/sdk/abi.ts");
  const host = hostEnums();

  it("finds the enums on both sides", () => {
    expect([...sdk.keys()]).toContain("WasmResult");
    expect([...host.keys()]).toContain("Status");
    expect(sdk.get("BufferType")?.CallData).toBe(8);
  });

  it("pairs every enum of one side with an enum of the other", () => {
    const paired = [...sdk.keys()].map((name) => HOST_NAME[name] ?? name);
    expect(paired.toSorted()).toEqual([...host.keys()].toSorted());
  });

  for (const [sdkName, sdkMembers] of sdk) {
    const hostName = HOST_NAME[sdkName] ?? sdkName;
    it(`${sdkName} (SDK) and ${hostName} (host) have the same members with the same values`, () => {
      const hostMembers = host.get(hostName);
      expect(hostMembers, `host/abi.ts has no ${hostName}`).toBeDefined();
      expect(expectedHostMembers(sdkName, sdkMembers, hostMembers ?? {})).toEqual(hostMembers);
    });
  }

  it("derives the host's bounds and level names from its enums", () => {
    expect(hostAbi.MAX_MAP_TYPE).toBe(Math.max(...Object.values(hostAbi.MapType)));
    expect(hostAbi.MAX_BUFFER_TYPE).toBe(Math.max(...Object.values(hostAbi.BufferType)));
    expect(hostAbi.LOG_LEVEL_NAMES.map((name) => name.toLowerCase())).toEqual(
      Object.entries(hostAbi.LogLevel)
        .sort(([, a], [, b]) => a - b)
        .map(([name]) => name.toLowerCase()),
    );
  });
});

describe("parseEnums", () => {
  it("reads implicit, hexadecimal, negative and parenthesized values, and skips what is not an enum", () => {
    const source = `
      // enum NotThis { A = 1 }
      export const notAnEnum = 3;
      export enum E { A, B = 0x10, C, D = -(2), "E" = 7 }
      enum F {}
    `;
    expect(Object.fromEntries(parseEnums(source, "x.ts"))).toEqual({
      E: { A: 0, B: 16, C: 17, D: -2, E: 7 },
      F: {},
    });
  });

  it("refuses a value it cannot evaluate, naming the member and line", () => {
    expect(() => parseEnums("enum E {\n  A = 1 << 2,\n}", "x.ts")).toThrow(
      "x.ts:2: cannot evaluate E.A = 1 << 2",
    );
  });
});
