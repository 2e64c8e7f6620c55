// The driver's side of the page path's text layout (js/plan.mjs) against the
// golden file the Rust side's tests read too (src/page/codec.rs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { decodePlan, encodeInputs } from "../js/plan.mjs";

const golden = JSON.parse(readFileSync(new URL("./fixtures/plan-codec.json", import.meta.url), "utf8"));

test("inputs are written as the Rust side reads them", () => {
  for (const { fields, text } of golden.inputs) {
    const headers = new Headers();
    for (const [name, key] of [
      ["cookie", "cookie"],
      ["accept", "accept"],
      ["sec-fetch-mode", "secFetchMode"],
      ["content-type", "contentType"],
      ["content-length", "contentLength"],
      ["sec-gpc", "secGpc"],
    ]) {
      if (fields[key] !== null) headers.set(name, fields[key]);
    }
    assert.equal(encodeInputs(fields.method, fields.url, headers), text);
  }
});

test("every plan the Rust side writes reads back field by field", () => {
  assert.ok(golden.plans.some((p) => p.plan.kind === "forward"));
  for (const { text, plan } of golden.plans) {
    assert.deepEqual(decodePlan(text), plan, text);
  }
});

test("a text the Rust side would not write is an error, never a cookie", () => {
  for (const { text, why } of golden.errors) {
    assert.throws(() => decodePlan(text), Error, why);
  }
});
