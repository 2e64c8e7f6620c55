// The edge's storage bindings and module rules as wrangler.toml declares
// them, for every bench harness that starts the built worker (or the JS
// reference beside the same bindings) under Miniflare.
export const EDGE_STORAGE = {
  kvNamespaces: ["CIO_KV"],
  durableObjects: {
    PERSON: { className: "Person", useSQLite: true },
    VISITOR: { className: "Visitor", useSQLite: true },
    IDENTITY_INDEX: { className: "IdentityIndex", useSQLite: true },
    FORWARDING: { className: "Forwarding", useSQLite: true },
  },
};

// The bundle and its helpers as ES modules, the wasm as a compiled module,
// the SDK texts beside the bundle as Text modules (scripts/build.sh).
export const MODULE_RULES = [
  { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
  { type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true },
  { type: "Text", include: ["**/*.txt"] },
];

// The edge's object classes, empty: appended to the JS reference so it
// starts beside the same bindings (bench/run.mjs, bench/cold.mjs).
export const EMPTY_CLASSES = "export class Person {}\nexport class Visitor {}\nexport class IdentityIndex {}\nexport class Forwarding {}\n";
