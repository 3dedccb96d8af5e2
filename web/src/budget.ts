// The console's JavaScript budget: everything its page loads (entry, static imports, lazy chunks), gzipped.
// Checked by test/web/budgets.test.ts and printed by `npm run bench:console`.
export const CONSOLE_JS_BUDGET_GZIP_BYTES = 300 * 1024;
