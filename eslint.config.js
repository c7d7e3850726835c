import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "data/**", "node_modules/**", "eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          // node:test runs top-level test() calls itself; awaiting them is not how tests are written.
          allowForKnownSafeCalls: [
            { from: "package", name: ["test", "it", "describe", "suite"], package: "node:test" },
          ],
        },
      ],
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    files: ["agent/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["../coordinator/*"] }] },
  },
  {
    files: ["coordinator/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["../agent/*"] }] },
  },
  {
    // The protocol proper stays free of Node APIs; protocol/node/ holds what both sides share on Node.
    files: ["protocol/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["node:*", "../agent/*", "../coordinator/*"] }] },
  },
  {
    files: ["protocol/node/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: ["../../agent/*", "../../coordinator/*"] }] },
  },
);
