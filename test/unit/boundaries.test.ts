// The rules between the project's parts, checked on the source instead of held
// by convention (docs/layout.md):
// - src/ (the front process) reaches the engine only through engine/index.ts;
// - nothing the front loads statically reaches node-llama-cpp: the model lives
//   in the worker process, and loading it in the front costs tens of MiB.
// Imports are read with the TypeScript parser, so multi-line and re-exporting
// statements count; `import type` is erased at build and loads nothing.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import ts from "typescript";
import { REPO_ROOT } from "../helpers/openapi.js";

interface ImportEdge {
  from: string;
  specifier: string;
  typeOnly: boolean;
}

/** Static imports and re-exports of one source file (dynamic `import()` excluded: it loads on demand). */
export function staticImports(file: string, text = fs.readFileSync(file, "utf8")): ImportEdge[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const edges: ImportEdge[] = [];
  for (const stmt of source.statements) {
    if (ts.isImportDeclaration(stmt) && ts.isStringLiteral(stmt.moduleSpecifier)) {
      const clause = stmt.importClause;
      const allTypes =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            clause.namedBindings !== undefined &&
            ts.isNamedImports(clause.namedBindings) &&
            clause.namedBindings.elements.length > 0 &&
            clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      edges.push({ from: file, specifier: stmt.moduleSpecifier.text, typeOnly: allTypes });
    } else if (ts.isExportDeclaration(stmt) && stmt.moduleSpecifier && ts.isStringLiteral(stmt.moduleSpecifier)) {
      edges.push({ from: file, specifier: stmt.moduleSpecifier.text, typeOnly: stmt.isTypeOnly });
    }
  }
  return edges;
}

/** A relative specifier ("../engine/index.js") as the .ts file it names; null for a package. */
function resolveLocal(from: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  return path.resolve(path.dirname(from), specifier).replace(/\.js$/, ".ts");
}

function tsFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => path.join(dir, f));
}

/** Every package a file loads at start, following local imports (type-only ones load nothing). */
function packagesLoadedBy(entry: string): Map<string, string[]> {
  const seen = new Set<string>();
  const packages = new Map<string, string[]>();
  const walk = (file: string, chain: string[]): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const edge of staticImports(file)) {
      if (edge.typeOnly) continue;
      const local = resolveLocal(file, edge.specifier);
      if (local === null) {
        if (!packages.has(edge.specifier)) packages.set(edge.specifier, [...chain, path.relative(REPO_ROOT, file)]);
      } else {
        walk(local, [...chain, path.relative(REPO_ROOT, file)]);
      }
    }
  };
  walk(entry, []);
  return packages;
}

const SRC = path.join(REPO_ROOT, "src");
const ENGINE = path.join(REPO_ROOT, "engine");
const ENGINE_SURFACE = path.join(ENGINE, "index.ts");

describe("the boundaries between src/, engine/ and node-llama-cpp", () => {
  test("the import reader sees multi-line imports, re-exports and type-only imports", () => {
    const edges = staticImports(
      "x.ts",
      'import {\n  a,\n  b,\n} from "./a.js";\nimport type { T } from "./t.js";\nimport { type U } from "./u.js";\nexport * from "./e.js";\nconst m = await import("./dyn.js");\n',
    );
    assert.deepEqual(
      edges.map((e) => [e.specifier, e.typeOnly]),
      [
        ["./a.js", false],
        ["./t.js", true],
        ["./u.js", true],
        ["./e.js", false],
      ],
    );
  });

  test("src/ imports from engine/ only through engine/index.ts", () => {
    const offending: string[] = [];
    for (const file of tsFiles(SRC)) {
      for (const edge of staticImports(file)) {
        const local = resolveLocal(file, edge.specifier);
        if (local?.startsWith(ENGINE + path.sep) && local !== ENGINE_SURFACE) {
          offending.push(`${path.relative(REPO_ROOT, file)} imports ${edge.specifier}`);
        }
      }
    }
    assert.deepEqual(offending, [], "import these through engine/index.ts instead");
  });

  // The arrows run one way: engine/ -> models/ (it loads and renders with
  // them), src/ -> both, never back.
  const oneWay: [string, string[]][] = [
    ["models", ["engine", "src"]],
    ["engine", ["src"]],
  ];
  for (const [from, forbidden] of oneWay) {
    test(`${from}/ imports nothing from ${forbidden.map((f) => `${f}/`).join(" or ")}`, () => {
      const offending: string[] = [];
      for (const file of tsFiles(path.join(REPO_ROOT, from))) {
        for (const edge of staticImports(file)) {
          const local = resolveLocal(file, edge.specifier);
          if (local !== null && forbidden.some((f) => local.startsWith(path.join(REPO_ROOT, f) + path.sep))) {
            offending.push(`${path.relative(REPO_ROOT, file)} imports ${edge.specifier}`);
          }
        }
      }
      assert.deepEqual(offending, []);
    });
  }

  for (const entry of ["src/cli.ts", "src/server.ts", "engine/index.ts"]) {
    test(`nothing ${entry} loads at start reaches node-llama-cpp`, () => {
      const packages = packagesLoadedBy(path.join(REPO_ROOT, entry));
      const chain = packages.get("node-llama-cpp");
      assert.equal(chain, undefined, `node-llama-cpp is loaded through ${chain?.join(" -> ")}`);
      // The walk must have followed the tree, or the check above proves nothing.
      assert.ok(packages.size > 0 || entry === "engine/index.ts", `${entry} loads no package at all`);
    });
  }

  test("the worker does load node-llama-cpp (the walk follows imports)", () => {
    assert.ok(packagesLoadedBy(path.join(ENGINE, "worker.ts")).has("node-llama-cpp"));
  });
});
