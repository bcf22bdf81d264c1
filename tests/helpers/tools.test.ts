import assert from "node:assert/strict";
import { gatedBody, toolGate } from "./tools.ts";

const MISSING = "no-such-tool-dotproxy";

/** Runs `fn` with env CI set to `value`, restoring it after. */
async function withCi(value: string, fn: () => Promise<void>): Promise<void> {
  const saved = Deno.env.get("CI");
  try {
    Deno.env.set("CI", value);
    await fn();
  } finally {
    if (saved === undefined) Deno.env.delete("CI");
    else Deno.env.set("CI", saved);
  }
}

Deno.test("toolGate ignores a test missing a tool outside CI, and finds the tools it has", async () => {
  await withCi("false", async () => {
    const gate = await toolGate(["sh", MISSING]);
    assert.equal(gate.ignore, true);
    assert.deepEqual(gate.missing, [MISSING]);
    assert.match(gate.bins.sh ?? "", /^\/.*\/sh$/);
    assert.equal((await toolGate(["sh"])).ignore, false);
  });
});

Deno.test("under CI=true a test missing a tool is not ignored: it fails naming the tool", async () => {
  await withCi("true", async () => {
    const gate = await toolGate(["sh", MISSING]);
    assert.equal(gate.ignore, false);
    let ran = false;
    const body = gatedBody(gate, () => {
      ran = true;
    });
    await assert.rejects(body({} as Deno.TestContext), new RegExp(`not installed: ${MISSING}`));
    assert.equal(ran, false);
  });
});

Deno.test("a gated test with every tool gets each tool's absolute path", async () => {
  await withCi("true", async () => {
    const gate = await toolGate(["sh"]);
    let seen = "";
    await gatedBody(gate, ({ sh }) => {
      seen = sh;
    })({} as Deno.TestContext);
    assert.match(seen, /^\/.*\/sh$/);
  });
});
