/** The golden vectors of protocol/vectors: the schema and an independent reading of the rules agree with expected.json. */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { checksum, manifestSchema, manifestSchemaPath } from "artifact-bus";
import { PACKAGE_DIR, PROTOCOL_DIR } from "./helpers.js";
import { Reject, schemaCode, validateManifest, verifyJob } from "./verify.js";

const VECTORS = path.join(PROTOCOL_DIR, "vectors");
const have = fs.existsSync(VECTORS);
const skip = have ? false : `no protocol vectors at ${VECTORS} (set ARTIFACT_BUS_PROTOCOL_DIR)`;

interface Expected { job: string; code?: string; status?: string; ingest?: string; artifacts?: Record<string, number> }
const list = (group: string): [string, Expected][] =>
  have
    ? fs.readdirSync(path.join(VECTORS, group)).sort().map((n) => {
        const dir = path.join(VECTORS, group, n);
        return [dir, JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8")) as Expected];
      })
    : [];

/** Rejection codes that only the JSON Schema decides. */
const SCHEMA_CODES = new Set(["manifest_schema", "kind_invalid", "unsafe_name", "protocol_version"]);

describe("protocol vectors", { skip }, () => {
  test("the package's schema is the protocol's", () => {
    assert.equal(fs.readFileSync(manifestSchemaPath(), "utf8"), fs.readFileSync(path.join(PROTOCOL_DIR, "manifest.schema.json"), "utf8"));
    assert.equal(path.dirname(manifestSchemaPath()), PACKAGE_DIR.replace(/\/$/, ""));
    assert.equal((manifestSchema() as { $schema: string }).$schema, "http://json-schema.org/draft-07/schema#");
  });

  for (const [dir, e] of list("valid")) {
    test(`valid/${path.basename(dir)}: schema, COMMIT, sizes, checksums, rows`, () => {
      const jobDir = path.join(dir, e.job);
      const raw = fs.readFileSync(path.join(jobDir, "manifest.json"));
      const m = JSON.parse(raw.toString("utf8")) as { artifacts: { name: string; rows: number }[] };
      assert.ok(validateManifest(m), JSON.stringify(validateManifest.errors));
      assert.equal(fs.readFileSync(path.join(jobDir, "COMMIT"), "ascii"), checksum(raw));
      verifyJob(jobDir);
      assert.deepEqual(Object.fromEntries(m.artifacts.map((a) => [a.name, a.rows])), e.artifacts);
    });
  }

  for (const [dir, e] of list("invalid")) {
    const code = e.code as string;
    test(`invalid/${path.basename(dir)}: rejected as ${code}`, () => {
      const jobDir = path.join(dir, e.job);
      assert.throws(() => verifyJob(jobDir), (err: unknown) => {
        assert.ok(err instanceof Reject, String(err));
        assert.equal(err.code, code, err.message);
        return true;
      });
      if (SCHEMA_CODES.has(code)) {
        // the JSON Schema alone refuses the manifest, with the same code
        const m = JSON.parse(fs.readFileSync(path.join(jobDir, "manifest.json"), "utf8")) as unknown;
        assert.equal(validateManifest(m), false);
        if (code !== "protocol_version") assert.equal(schemaCode(validateManifest.errors), code);
      }
    });
  }
});
