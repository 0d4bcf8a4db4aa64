/** The root and settings come from the same places, in the same order, as in the Python package. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ConfigError, loadConfig, spoolDir, submit } from "artifact-bus";
import { cleanEnv, ls, tempDir } from "./helpers.js";

let spool: string;
let dir: string;
const cwd = process.cwd();
beforeEach(() => {
  spool = cleanEnv();
  dir = tempDir();
  process.chdir(dir);
});
afterEach(() => process.chdir(cwd));

const sha16 = (s: string) => createHash("sha1").update(s).digest("hex").slice(0, 16);

describe("the root", () => {
  test("defaults to ./data/bus", () => {
    const c = loadConfig();
    assert.equal(c.root, path.join(dir, "data", "bus"));
    assert.equal(c.explicitRoot, false);
    assert.equal(c.staged, false);
  });

  test("[tool.artifact_bus] in the nearest pyproject.toml, relative to that file", () => {
    fs.writeFileSync(path.join(dir, "pyproject.toml"), '[project]\nname = "x"\n\n[tool.artifact_bus]\nroot = "buses/main"\n');
    fs.mkdirSync(path.join(dir, "sub", "deeper"), { recursive: true });
    process.chdir(path.join(dir, "sub", "deeper"));
    const c = loadConfig();
    assert.equal(c.root, path.join(dir, "buses", "main"));
    assert.equal(c.explicitRoot, true);
    assert.equal(c.sources["root"], path.join(dir, "pyproject.toml"));
  });

  test("a pyproject.toml without [tool.artifact_bus] is passed over", () => {
    fs.writeFileSync(path.join(dir, "pyproject.toml"), '[tool.artifact_bus]\nroot = "outer"\n');
    fs.mkdirSync(path.join(dir, "inner"));
    fs.writeFileSync(path.join(dir, "inner", "pyproject.toml"), '[project]\nname = "inner"\n');
    process.chdir(path.join(dir, "inner"));
    assert.equal(loadConfig().root, path.join(dir, "outer"));
  });

  test("ARTIFACT_BUS_ROOT wins over the project, the option over both", () => {
    fs.writeFileSync(path.join(dir, "pyproject.toml"), '[tool.artifact_bus]\nroot = "from-project"\n');
    process.env["ARTIFACT_BUS_ROOT"] = "from-env";
    assert.equal(loadConfig().root, path.join(dir, "from-env"));
    assert.equal(loadConfig({ root: "from-arg" }).root, path.join(dir, "from-arg"));
  });

  test("ARTIFACT_BUS_CONFIG names a whole file", () => {
    fs.writeFileSync(path.join(dir, "team.toml"), 'root = "/srv/bus"\nrequired = true\n');
    process.env["ARTIFACT_BUS_CONFIG"] = "team.toml";
    const c = loadConfig();
    assert.equal(c.root, "/srv/bus");
    assert.equal(c.required, true);
    process.env["ARTIFACT_BUS_CONFIG"] = "missing.toml";
    assert.throws(() => loadConfig(), ConfigError);
  });
});

describe("the root's bus.toml", () => {
  test("holds required, spool, remote, s3_endpoint, s3_region; the environment and options win over it", () => {
    const root = path.join(dir, "bus");
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, "bus.toml"),
      'required = true\nspool = "spool-here"\nremote = "s3://bucket/team/"\ns3_endpoint = "http://127.0.0.1:9"\ns3_region = "eu-west-1"\nbatch_size = 10\n');
    delete process.env["ARTIFACT_BUS_SPOOL"];
    const c = loadConfig({ root });
    assert.equal(c.required, true);
    assert.equal(c.spool, path.join(root, "spool-here")); // relative to the bus.toml
    assert.equal(c.remote, "s3://bucket/team");
    assert.equal(c.s3Endpoint, "http://127.0.0.1:9");
    assert.equal(c.s3Region, "eu-west-1");
    assert.equal(c.staged, false); // the writer's remote inbox: this producer still submits to the local root
    process.env["ARTIFACT_BUS_REQUIRED"] = "no";
    assert.equal(loadConfig({ root }).required, false);
    assert.equal(loadConfig({ root, required: true }).required, true);
    assert.equal(loadConfig({ root, spool }).spool, spool);
  });

  test("a required bus.toml is obeyed by submit: the job fails instead of spooling", async () => {
    const root = path.join(dir, "bus");
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, "bus.toml"), "required = true\n");
    fs.mkdirSync(path.join(root, "inbox"));
    fs.writeFileSync(path.join(root, "inbox", ".tmp"), "a file where the folder should be");
    await assert.rejects(submit([{ a: 1 }], { kind: "t", root }), /the bus is required/);
    assert.deepEqual(ls(spool), []);
  });

  test("bad files, keys and values are ConfigErrors naming the file", () => {
    const root = path.join(dir, "bus");
    fs.mkdirSync(root);
    const busToml = path.join(root, "bus.toml");
    for (const [text, msg] of [
      ["required = maybe\n", /not valid TOML/],
      ['colour = "red"\n', /unknown key 'colour'/],
      ['required = "perhaps"\n', /key 'required' must be true or false/],
      ['remote = "/not/a/url"\n', /key 'remote' must be an s3:\/\/ URL/],
      ['remote = "s3:///prefix"\n', /names a bucket/],
      ["batch_size = 0\n", /key 'batch_size' must be a positive integer/],
      ['root = "elsewhere"\n', /unknown key 'root'/],
    ] as const) {
      fs.writeFileSync(busToml, text);
      assert.throws(() => loadConfig({ root }), (e: unknown) => e instanceof ConfigError && e.message.startsWith(busToml) && msg.test(e.message), text);
    }
    fs.rmSync(busToml);
    process.env["ARTIFACT_BUS_REQUIRED"] = "sometimes";
    assert.throws(() => loadConfig({ root }), /environment: key 'required' must be true or false/);
  });
});

describe("an s3:// root", () => {
  test("stages jobs under the spool folder, per remote URL", () => {
    const c = loadConfig({ root: "s3://bus/team/" });
    assert.equal(c.remote, "s3://bus/team");
    assert.equal(c.staged, true);
    assert.equal(c.root, path.join(spool, "remote", sha16("s3://bus/team")));
    assert.equal(spoolDir(c), path.join(spool, sha16(c.root)));
    process.env["ARTIFACT_BUS_ROOT"] = "s3://bus/other";
    assert.equal(loadConfig().remote, "s3://bus/other");
  });

  test("must name a bucket", () => {
    assert.throws(() => loadConfig({ root: "s3:///prefix" }), /argument: bus root 's3:\/\/\/prefix' names no bucket/);
  });
});

describe("the S3 endpoint", () => {
  test("a malformed endpoint for an s3:// root fails at once, before anything is written", async () => {
    process.env["AWS_ENDPOINT_URL"] = "ftp://127.0.0.1:21";
    try {
      await assert.rejects(submit([{ a: 1 }], { kind: "t", root: "s3://bus/x" }), (e: unknown) =>
        e instanceof ConfigError && /s3_endpoint 'ftp:\/\/127.0.0.1:21' must look like http:\/\/host:port/.test(e.message));
      assert.deepEqual(ls(spool), []);
    } finally {
      delete process.env["AWS_ENDPOINT_URL"];
    }
  });
});
